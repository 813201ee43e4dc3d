"""Each reference service runs under its least-privilege identity on a real server, works,
and is refused the moment it steps outside (issue 10 §2)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from harness._process import ManagedProcess
from harness.security.permissions import identities_for_run
from harness.security.probes import probe_permission
from services.common.botspec import load_runtime_config

from .conftest import accounts_broker

REPO = Path(__file__).resolve().parents[3]
SERVICES = ["registrar", "lagmon", "radar_sim"]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
        return json.loads(body) if resp.headers.get_content_type() == "application/json" \
            else body.decode()


async def _until(pred: Any, timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await asyncio.to_thread(pred):
            return True
        await asyncio.sleep(0.25)
    return False


def _service(name: str, argv: list[str], env: dict[str, str], urls: dict[str, str]
             ) -> ManagedProcess:
    async def ready(p: ManagedProcess) -> None:
        urls[name] = (await p.wait_for_log(r"^READY http://")).split()[1]

    return ManagedProcess([sys.executable, "-m", f"services.{name}", *argv], name=name,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, cwd=REPO,
                          ready=ready, ready_timeout_s=30.0)


async def test_reference_services_work_under_least_privilege(tmp_path: Path) -> None:
    config = load_runtime_config()
    identities = identities_for_run(config, SERVICES)
    async with accounts_broker(identities, tmp_path) as broker:
        await broker.provision(config)
        urls: dict[str, str] = {}
        registrar = _service("registrar", ["--db", str(tmp_path / "reg.db"), "--http-port", "0",
                                           "--expires", "1"], broker.env("registrar"), urls)
        lagmon = _service("lagmon", ["--http-port", "0", "--interval-s", "0.5"],
                          broker.env("lagmon"), urls)
        radar = _service("radar_sim", ["--http-port", "0", "--rate-hz", "20"],
                         broker.env("radar_sim"), urls)
        async with registrar, lagmon, radar:
            # Radar frames (210) and sensor status (201) go through JetStream into the registrar,
            # which stores its own boot (101) too; the lag monitor lists both durables.
            def stored() -> bool:
                counts = _get(urls["registrar"] + "/counts")
                return all(counts.get(c, 0) > 0 for c in ("101", "201", "210"))

            assert await _until(stored, 30), _get(urls["registrar"] + "/counts")

            def lag_seen() -> bool:
                text = json.dumps(_get(urls["lagmon"] + "/lag"))
                return "registrar-events" in text and "registrar-radar" in text

            assert await _until(lag_seen, 20), _get(urls["lagmon"] + "/lag")
            metrics = _get(urls["radar_sim"] + "/metrics")
            assert "qiki_radar_sim_published_total" in metrics
            assert "qiki_radar_sim_publish_errors_total{" not in metrics
            # A restarted lag monitor reads its threshold events back through its one
            # named consumer: no violation either.
            await lagmon.restart()
            await asyncio.sleep(1.5)
        log = broker.log_text()
        assert "Violation" not in log, [ln for ln in log.splitlines() if "Violation" in ln]

        # One step outside, per service: refused by the server.
        outside = [
            ("radar_sim", "publish", "qiki.events.v1.x"),
            ("radar_sim", "publish", "$JS.API.STREAM.DELETE.QIKI_RADAR_V1"),
            ("registrar", "subscribe", "qiki.radar.v1.>"),
            ("registrar", "publish", "$JS.API.CONSUMER.DELETE.QIKI_EVENTS_V1.registrar-events"),
            ("lagmon", "publish", "$JS.API.CONSUMER.DELETE.QIKI_EVENTS_V1.registrar-events"),
            ("lagmon", "publish", "qiki.events.v1.registrar"),
            ("load", "publish", "$JS.API.STREAM.PURGE.QIKI_EVENTS_V1"),
            ("load", "subscribe", "qiki.events.v1.>"),
            # nobody reads another identity's replies (PubAcks, pull deliveries)
            ("radar_sim", "subscribe", "_INBOX.registrar.>"),
            ("load", "subscribe", "_INBOX.>"),
        ]
        for who, action, subject in outside:
            r = await probe_permission(who, broker.settings(who), action=action,  # type: ignore[arg-type]
                                       subject=subject, expect="denied")
            assert r.observed == "denied", r
            assert subject in r.reason
        # The server's log names every one (no advisory exists for them): identity included.
        from harness.security.probes import violations_in_log

        logged = {(r.identity, r.action, r.subject) for r in violations_in_log(broker.log_text())}
        assert logged == set(outside), logged ^ set(outside)
        inside = [("radar_sim", "publish", "qiki.radar.v1.frames"),
                  ("registrar", "subscribe", "_INBOX.registrar.abc"),
                  ("harness", "subscribe", "qiki.events.v1.>")]
        for who, action, subject in inside:
            r = await probe_permission(who, broker.settings(who), action=action,  # type: ignore[arg-type]
                                       subject=subject, expect="allowed")
            assert r.observed == "allowed", r
