"""A tiny user service written with plain nats-py, as a user of qiki-harness would.

It pulls CloudEvents from a durable consumer on its input stream and answers each with a
CloudEvent of the same id on its output subject (published into its own stream, deduplicated
by ``Nats-Msg-Id``), acking the input only after the answer is stored: a kill loses nothing.

Environment: ECHO_NATS_URL (required), ECHO_IN (default ``echo.v1.in.>``), ECHO_OUT
(``echo.v1.out``), ECHO_DURABLE (``echo``), ECHO_STREAMS (stream name prefix, ``ECHO``);
credentials as QIKI_NATS_TOKEN / QIKI_NATS_USER / QIKI_NATS_PASSWORD, TLS as QIKI_NATS_CA
(and QIKI_NATS_CERT / QIKI_NATS_KEY under mTLS) and its reply prefix QIKI_NATS_INBOX_PREFIX
(required under ``auth: accounts``) when the harness sets them. ECHO_CRASH=1 fails at
start; ECHO_SILENT=1 never says it is listening (a service that never gets ready). Prints
``listening on ...``.
ECHO_HTTP_PORT: answers any HTTP request with 200 there (a health endpoint); ECHO_STATUS:
publishes a heartbeat on that subject every 0.3 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys

import nats
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.errors import BadRequestError


async def _http_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()
    writer.close()


async def _heartbeat(nc: nats.NATS, subject: str) -> None:
    while True:
        await nc.publish(subject, b'{"status": "up"}')
        await asyncio.sleep(0.3)


async def main() -> int:
    if os.environ.get("ECHO_CRASH") == "1":
        print("echo: cannot open the frobnicator (ECHO_CRASH=1)", flush=True)
        return 3
    url = os.environ["ECHO_NATS_URL"]
    subject_in = os.environ.get("ECHO_IN", "echo.v1.in.>")
    subject_out = os.environ.get("ECHO_OUT", "echo.v1.out")
    durable = os.environ.get("ECHO_DURABLE", "echo")
    prefix = os.environ.get("ECHO_STREAMS", "ECHO")
    auth = {k: os.environ[v] for k, v in (("token", "QIKI_NATS_TOKEN"), ("user", "QIKI_NATS_USER"),
                                         ("password", "QIKI_NATS_PASSWORD")) if v in os.environ}
    opts: dict[str, object] = dict(auth)
    if os.environ.get("QIKI_NATS_CA") or os.environ.get("QIKI_NATS_CERT"):
        ctx = ssl.create_default_context(cafile=os.environ.get("QIKI_NATS_CA"))
        if os.environ.get("QIKI_NATS_CERT"):
            ctx.load_cert_chain(os.environ["QIKI_NATS_CERT"], os.environ["QIKI_NATS_KEY"])
        opts["tls"] = ctx
    if os.environ.get("QIKI_NATS_INBOX_PREFIX"):
        opts["inbox_prefix"] = os.environ["QIKI_NATS_INBOX_PREFIX"]
    nc = await nats.connect(url.split(","), name="echo", max_reconnect_attempts=-1,
                            reconnect_time_wait=0.25, ping_interval=1, **opts)  # type: ignore[arg-type]
    js = nc.jetstream(timeout=5.0)
    # A user's service makes sure its streams exist; when the spec already provisioned
    # them (same subjects), that is fine too.
    for name, subjects in ((f"{prefix}_IN", [subject_in]), (f"{prefix}_OUT", [subject_out])):
        try:
            await js.add_stream(StreamConfig(name=name, subjects=subjects))
        except BadRequestError:
            pass
    # A short ack wait: what a killed instance had in hand comes back within seconds.
    sub = await js.pull_subscribe(subject_in, durable=durable, stream=f"{prefix}_IN",
                                  config=ConsumerConfig(ack_wait=2.0, max_ack_pending=1000))
    print(f"echo: connected to {nc.connected_url.netloc if nc.connected_url else url}"
          f" ({'tls' if 'tls' in opts else 'plain'})", flush=True)
    background: list[object] = []
    if os.environ.get("ECHO_HTTP_PORT"):
        background.append(await asyncio.start_server(
            _http_ok, "0.0.0.0", int(os.environ["ECHO_HTTP_PORT"])))
    if os.environ.get("ECHO_STATUS"):
        background.append(asyncio.create_task(_heartbeat(nc, os.environ["ECHO_STATUS"])))
    if os.environ.get("ECHO_SILENT") != "1":
        print(f"echo: listening on {subject_in}", flush=True)
    answered = 0
    while True:
        try:
            msgs = await sub.fetch(100, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        except Exception as exc:  # disconnected, broker restarting: try again
            print(f"echo: fetch failed: {type(exc).__name__}", flush=True)
            await asyncio.sleep(0.2)
            continue
        for msg in msgs:
            headers = msg.headers or {}
            ce_id = headers.get("ce-id") or json.loads(msg.data).get("id")
            out = {"ce-specversion": "1.0", "ce-id": ce_id, "ce-source": "urn:test:echo",
                   "ce-type": "test.echo.v1.Echoed", "content-type": "application/json",
                   "Nats-Msg-Id": ce_id}
            try:
                await js.publish(subject_out, msg.data, headers=out)
                await msg.ack()
            except Exception as exc:  # not acked: it comes back and is answered again
                print(f"echo: answer failed: {type(exc).__name__}", flush=True)
                continue
            answered += 1
            if answered % 500 == 0:
                print(f"echo: answered {answered}", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
