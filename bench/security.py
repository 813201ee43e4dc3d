"""What TLS costs: ``python -m bench.security`` (issue 10).

One nats-server per variant, all with the per-run token auth the harness mints
(:class:`harness.security.credentials.RunCredentials`), side by side in one run:

- *plain*: token over plain TCP (the baseline);
- *tls*: token over TLS (the client verifies the server against the run's CA);
- *mtls*: token over TLS with client certificates (``verify_client``), what
  ``secure-mtls-chaos`` runs.

For each: (1) acked msg/s of the injector at full speed (``MaxRate``, window 1,000, 256-byte
messages, JetStream file storage; the wire engine, which speaks TLS itself) and (2) registrar
events/s: ``--events`` CloudEvents preloaded, then ``python -m services.registrar`` (its
credentials and TLS files in ``QIKI_NATS_*``, as a run gives them) drains them; rate = events /
(READY until nothing pending or unacknowledged). Variants are interleaved per round and the
median of ``--rounds`` is reported; CPU microseconds per message (client + nats-server for
(1), registrar + nats-server for (2)) are reported too, being less noisy than wall-clock rates
on a shared machine.

Goal: TLS costs at most 1.5x plain for both figures (and mTLS). The goal is judged on the CPU
cost per message (variant us/msg / plain us/msg), which a loaded machine disturbs far less
than the rates; the rate ratio (plain rate / variant rate) is reported beside it. The table
goes to stdout; the last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from harness.broker import NatsServer
from harness.load import MaxRate, bytes_factory, inject
from harness.security.credentials import RunCredentials, default_identities
from services.common.settings import NatsSettings, connect, quiet_ssl_eof_noise

GOAL_COST_RATIO = 1.5
SIZE = 256
LOAD_STREAM = "BENCH_SEC"
LOAD_SUBJECT = "bench.sec"
#: variant -> (tls, verify_client)
VARIANTS: dict[str, tuple[bool, bool]] = {"plain": (False, False), "tls": (True, False),
                                          "mtls": (True, True)}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _service_env(settings: NatsSettings) -> dict[str, str]:
    """QIKI_NATS_* for the registrar: the way the harness hands a service its credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIKI_NATS_")}
    env["QIKI_NATS_URL"] = ",".join(settings.servers)
    kw = settings.connect_kwargs()
    if kw.get("token"):
        env["QIKI_NATS_TOKEN"] = str(kw["token"])
    for var, path in (("QIKI_NATS_CA", settings.tls_ca_file),
                      ("QIKI_NATS_CERT", settings.tls_cert_file),
                      ("QIKI_NATS_KEY", settings.tls_key_file)):
        if path is not None:
            env[var] = str(path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _events(n: int) -> list[tuple[dict[str, str], bytes]]:
    from services.common.cloudevents import new_event, to_binary

    stamp = datetime.now(UTC).isoformat()
    return [to_binary(new_event(
        "qiki.sensor.v1.IoStatus", "urn:qiki:bench:sensor",
        {"sensor_id": f"s{i % 16}", "status": "ok", "timestamp": stamp, "frames_sent": i,
         "detail": "x" * 64},
        subject=f"sensor-{i % 16}")) for i in range(n)]


async def _acked_rate(srv: NatsServer, duration_s: float) -> tuple[float, float, str]:
    """(acked msg/s, CPU us per msg of this process + nats-server, engine)."""
    nc = await connect(srv.nats_settings(name="bench-sec"), first_connect_timeout_s=10)
    try:
        js = nc.jetstream(timeout=10)
        with contextlib.suppress(Exception):
            await js.delete_stream(LOAD_STREAM)
        await js.add_stream(name=LOAD_STREAM, subjects=[f"{LOAD_SUBJECT}.>"])
        pid = srv.node.pid
        assert pid is not None
        c0, s0 = _self_cpu_s(), _cpu_s(pid)
        res = await inject(nc, f"{LOAD_SUBJECT}.x", rate=MaxRate(), duration_s=duration_s,
                           window=1000, factory=bytes_factory(SIZE))
        cpu = (_self_cpu_s() - c0) + (_cpu_s(pid) - s0)
        acked = max(1, len(res.delivery_sets()[1]))
        if res.failed:
            print(f"  note: {len(res.failed)} failed: {res.summary()['failure_reasons']}")
        return res.achieved_rate_per_s, cpu / acked * 1e6, res.engine
    finally:
        await nc.close()


async def _registrar_rate(srv: NatsServer, events: list[tuple[dict[str, str], bytes]],
                          db: Path) -> tuple[float, float]:
    """(registrar events/s draining a preloaded backlog, CPU us per event of registrar +
    nats-server)."""
    from services.common.botspec import load_runtime_config, provision

    config = load_runtime_config()
    stream = config.stream_for(config.subjects.sensor_events)
    assert stream is not None and config.subjects.sensor_events
    durable = next(c.durable for c in config.consumers
                   if c.stream == stream.name and c.durable in config.registrar.durables)
    nc = await connect(srv.nats_settings(name="bench-sec-preload"), first_connect_timeout_s=10)
    try:
        js = nc.jetstream(timeout=30)
        await provision(js, config)
        for headers, body in events:
            await nc.publish(config.subjects.sensor_events, body, headers=headers)
        await nc.flush(timeout=60)
        while (await js.stream_info(stream.name)).state.messages < len(events):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.registrar", "--db", str(db), "--http-port", "0",
            "--provision", "never", "--log-level", "WARNING",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=_service_env(srv.nats_settings(**_registrar_fields(srv))),
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line.startswith(b"READY "):
                raise RuntimeError(f"registrar did not start: {line!r}")
            t0 = time.perf_counter()
            pid = srv.node.pid
            assert pid is not None
            c0 = _cpu_s(proc.pid) + _cpu_s(pid)
            while True:
                info = await js.consumer_info(stream.name, durable)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    break
                if time.perf_counter() - t0 > 600:
                    raise TimeoutError(f"{durable} did not drain {len(events)} events")
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            cpu = _cpu_s(proc.pid) + _cpu_s(pid) - c0
        finally:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return len(events) / elapsed, cpu / len(events) * 1e6
    finally:
        await nc.close()


def _registrar_fields(srv: NatsServer) -> dict[str, Any]:
    creds = srv.credentials
    return creds.client_fields("registrar") if creds is not None else {}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant, interleaved per round; medians per variant."""
    quiet_ssl_eof_noise()
    acked: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    reg: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    engines: set[str] = set()
    events = _events(args.events)
    with tempfile.TemporaryDirectory(prefix="qiki-bench-sec-") as tmp:
        for r in range(args.rounds):
            for name, (tls, verify) in VARIANTS.items():
                creds = RunCredentials.issue(
                    Path(tmp) / f"{name}{r}" / "secrets", "token",
                    default_identities(["registrar"]), tls=tls, verify_client=verify)
                async with NatsServer(credentials=creds) as srv:
                    rate, us, engine = await _acked_rate(srv, args.duration_s)
                    engines.add(engine)
                    acked[name].append((rate, us))
                    if args.events:
                        ev_rate, ev_us = await _registrar_rate(
                            srv, events, Path(tmp) / f"{name}{r}" / "registrar.db")
                        reg[name].append((ev_rate, ev_us))
                    else:
                        ev_rate = ev_us = float("nan")
                print(f"round {r + 1} {name:<5}: {rate:>9,.0f} acked msg/s ({us:.1f} us/msg), "
                      f"registrar {ev_rate:>8,.0f} ev/s ({ev_us:.1f} us/ev)", flush=True)
    return {"acked": acked, "registrar": reg, "engines": sorted(engines), "args": vars(args)}


def _median(rows: list[tuple[float, float]], i: int) -> float:
    return statistics.median(x[i] for x in rows) if rows else float("nan")


def report(r: dict[str, Any]) -> dict[str, Any]:
    """Print the table; return the RESULT dict."""
    a, g = r["acked"], r["registrar"]
    rows = {v: {"acked_msg_per_s": _median(a[v], 0), "acked_cpu_us_per_msg": _median(a[v], 1),
                "registrar_events_per_s": _median(g[v], 0),
                "registrar_cpu_us_per_event": _median(g[v], 1)} for v in VARIANTS}
    base = rows["plain"]
    print(f"\nTLS vs plain (token auth on all), median of {r['args']['rounds']} round(s); "
          f"load engine: {', '.join(r['engines'])}")
    print(f"{'variant':<8} {'acked msg/s':>12} {'cost':>6} {'cpu us/msg':>11} "
          f"{'registrar ev/s':>15} {'cost':>6} {'cpu us/ev':>10}")
    cost: dict[str, dict[str, float]] = {}
    for v, row in rows.items():
        cost[v] = {
            "acked": base["acked_msg_per_s"] / row["acked_msg_per_s"],
            "registrar": (base["registrar_events_per_s"] / row["registrar_events_per_s"]
                          if row["registrar_events_per_s"] == row["registrar_events_per_s"]
                          else float("nan")),
            "acked_cpu": row["acked_cpu_us_per_msg"] / base["acked_cpu_us_per_msg"],
            "registrar_cpu": (row["registrar_cpu_us_per_event"]
                              / base["registrar_cpu_us_per_event"]),
        }
        print(f"{v:<8} {row['acked_msg_per_s']:>12,.0f} {cost[v]['acked']:>5.2f}x "
              f"{row['acked_cpu_us_per_msg']:>11.1f} {row['registrar_events_per_s']:>15,.0f} "
              f"{cost[v]['registrar']:>5.2f}x {row['registrar_cpu_us_per_event']:>10.1f}")
    goals = {f"{v}_{k}_cpu_cost_le_{GOAL_COST_RATIO}":
             bool(cost[v][f"{k}_cpu"] <= GOAL_COST_RATIO)
             for v in ("tls", "mtls") for k in ("acked", "registrar")}
    for v in ("tls", "mtls"):
        print(f"{v}: CPU cost vs plain: acked {cost[v]['acked_cpu']:.2f}x, registrar "
              f"{cost[v]['registrar_cpu']:.2f}x")
    print("cost = plain rate / variant rate (1.00x: free); goal (CPU cost) <= "
          f"{GOAL_COST_RATIO}x: " + ", ".join(f"{k}={'met' if ok else 'NOT met'}"
                                             for k, ok in goals.items()))
    print(f"note: a shared 2-core machine (load {os.getloadavg()[0]:.2f}); figures are "
          "indicative, the CPU columns less noisy than the rates")
    return {
        "variants": {v: {k: round(x, 2) for k, x in row.items()} for v, row in rows.items()},
        "cost_ratio": {v: {k: round(x, 3) for k, x in c.items()} for v, c in cost.items()},
        "goal_cost_ratio": GOAL_COST_RATIO,
        "goals": goals,
        "engines": r["engines"],
        "rounds": r["args"]["rounds"],
        "events": r["args"]["events"],
        "duration_s": r["args"]["duration_s"],
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.security``."""
    p = argparse.ArgumentParser(prog="python -m bench.security", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--duration-s", type=float, default=3.0, help="seconds per injector run")
    p.add_argument("--events", type=int, default=20_000,
                   help="events the registrar drains per variant and round (0: skip)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (median)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration_s, args.events, args.rounds = 1.0, 3000, 1
    result = uvloop.run(main_async(args))
    print("RESULT " + json.dumps(report(result)))


if __name__ == "__main__":
    main()
