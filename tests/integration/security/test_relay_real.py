"""nats-server's auth-failure advisories become CloudEvents (issue 10 §2): the relay, as the
system account's user, republishes them; probe-observed denials are published too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from harness.security.events import AUTH_FAILED, PERMISSION_DENIED, SOURCE
from harness.security.permissions import identities_for_run
from harness.security.probes import probe_connection, probe_permission
from harness.security.relay import AuthAdvisoryRelay, publish_denials, security_subject
from services.common.botspec import load_runtime_config, provision
from services.common.cloudevents import from_message
from services.common.settings import connect

from .conftest import SYS_USER, accounts_broker


async def test_auth_failures_and_denials_become_cloudevents(tmp_path: Path) -> None:
    config = load_runtime_config().with_overrides(storage="memory")
    subject = security_subject(config)
    assert subject is not None
    async with accounts_broker(identities_for_run(config, ["radar_sim"]), tmp_path) as broker:
        nc = await connect(broker.settings("harness"))
        try:
            js = nc.jetstream()
            await provision(js, config)
            sub = await js.subscribe(subject, ordered_consumer=True)
            async with AuthAdvisoryRelay(broker.settings(SYS_USER), js, subject) as relay:
                wrong = await probe_connection("wrong_credentials", broker.settings("radar_sim"))
                anon = await probe_connection("anonymous", broker.settings("radar_sim"))
                assert wrong.observed == anon.observed == "refused"
                denied = await probe_permission("radar_sim", broker.settings("radar_sim"),
                                                action="publish", subject="qiki.events.v1.x",
                                                expect="denied")
                assert await publish_denials(js, subject, [denied, wrong]) == 1
                for _ in range(40):
                    await relay.settle()
                    if len(relay.relayed) >= 2:
                        break
                    await asyncio.sleep(0.1)
                assert len(relay.relayed) >= 2, relay.relayed
            events = []
            while True:
                try:
                    msg = await sub.next_msg(timeout=2.0)
                except Exception:
                    break
                events.append(from_message(msg.headers, msg.data))
        finally:
            await nc.close()
        kinds = [e.type for e in events]
        data = [json.loads(e.data) for e in events]
        assert kinds.count(AUTH_FAILED) >= 2 and kinds.count(PERMISSION_DENIED) == 1, kinds
        auth = [d for e, d in zip(events, data, strict=True) if e.type == AUTH_FAILED]
        assert "radar_sim" in {d.get("client_user") for d in auth}  # the wrong password
        assert all(d["reason"] and d["advisory_type"].startswith("io.nats.server.advisory")
                   for d in auth), auth
        assert all(e.source == SOURCE for e in events)
        text = json.dumps(data)
        for secret in broker.passwords.values():
            assert secret not in text
        denial = next(d for e, d in zip(events, data, strict=True) if e.type == PERMISSION_DENIED)
        assert denial["subject"] == "qiki.events.v1.x" and denial["expected"] is True
