"""Per-identity inboxes on a real server (issue 10): under least privilege each identity
receives its replies (PubAcks, JetStream API answers, pull deliveries) on its own
``_INBOX.<identity>`` and may not subscribe to another's; a client that keeps nats-py's
shared ``_INBOX`` is refused, and the server log names it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from harness.security.permissions import identities_for_run, inbox_prefix
from harness.security.probes import probe_permission, violations_in_log
from services.common.botspec import load_runtime_config
from services.common.cloudevents import new_event, publish_event
from services.common.settings import connect

from .conftest import accounts_broker

SERVICES = ["registrar", "radar_sim"]


async def test_own_inbox_works_and_another_identity_cannot_read_it(tmp_path: Path) -> None:
    config = load_runtime_config()
    async with accounts_broker(identities_for_run(config, SERVICES), tmp_path) as broker:
        await broker.provision(config)

        nc = await connect(broker.settings("registrar"))
        try:
            js = nc.jetstream(timeout=5.0)
            # request/reply on its own inbox: a JetStream API answer, then a PubAck
            info = await js.consumer_info("QIKI_EVENTS_V1", "registrar-events")
            assert info.name == "registrar-events"
            ev = new_event("qiki.registrar.v1.boot_ok", "urn:test:inbox", {"n": 1})
            ack = await publish_event(js, "qiki.events.v1.registrar", ev, timeout_s=5.0)
            assert ack is None or getattr(ack, "stream", "QIKI_EVENTS_V1") == "QIKI_EVENTS_V1"
            # a pull: the deliveries come to _INBOX.registrar.<random>
            psub = await js.pull_subscribe_bind("registrar-events", "QIKI_EVENTS_V1")
            [msg] = await psub.fetch(1, timeout=5.0)
            assert msg.subject == "qiki.events.v1.registrar"
            await msg.ack()
            # (the prefix nats-py really used)
            assert nc.new_inbox().startswith(inbox_prefix("registrar") + ".")
        finally:
            await nc.close()

        # The radar simulator cannot read the registrar's replies, nor the shared inbox.
        for subject in ("_INBOX.registrar.>", "_INBOX.>", "_INBOX.*.>"):
            r = await probe_permission("radar_sim", broker.settings("radar_sim"),
                                       action="subscribe", subject=subject, expect="denied")
            assert r.observed == "denied", r
        own = await probe_permission("radar_sim", broker.settings("radar_sim"),
                                     action="subscribe", subject="_INBOX.radar_sim.x.1",
                                     expect="allowed")
        assert own.observed == "allowed", own
        assert "Violation" not in "\n".join(
            ln for ln in broker.log_text().splitlines() if "test-registrar" in ln)


async def test_a_client_keeping_the_shared_inbox_is_refused_and_named(tmp_path: Path) -> None:
    """What a user service under ``auth: accounts`` sees when it ignores
    QIKI_NATS_INBOX_PREFIX: its JetStream publish gets no PubAck (the reply subscription is
    refused), and the server log names the identity and the client."""
    config = load_runtime_config()
    async with accounts_broker(identities_for_run(config, SERVICES), tmp_path) as broker:
        await broker.provision(config)
        careless = broker.settings("radar_sim").with_overrides(inbox_prefix=None,
                                                                name="careless-radar")
        nc = await connect(careless)
        try:
            ev = new_event("qiki.radar.v1.Frame", "urn:test:inbox", {"n": 1})
            failed = False
            try:
                await publish_event(nc.jetstream(timeout=1.5), "qiki.radar.v1.frames", ev,
                                    timeout_s=1.5)
            except Exception:
                failed = True
            assert failed, "a PubAck reached a subscription the server must refuse"
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
        for _ in range(20):  # the log line may land a moment after the error
            logged = [v for v in violations_in_log(broker.log_text())
                      if v.action == "subscribe" and (v.subject or "").startswith("_INBOX.")]
            if logged:
                break
            await asyncio.sleep(0.1)
        assert logged, broker.log_text()[-2000:]
        assert logged[0].identity == "radar_sim"
        assert "careless-radar" in logged[0].reason
