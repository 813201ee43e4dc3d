"""A slow user service with plain nats-py: reads the spec's durable ``climate-reader`` and
answers every reading with a low-severity alarm, ~100 a second. GH_NATS_URL: where NATS is."""

import asyncio
import json
import os
import uuid

import nats
from nats.errors import TimeoutError as NatsTimeout


async def main() -> None:
    nc = await nats.connect(os.environ["GH_NATS_URL"])
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind("climate-reader", "ACME_CLIMATE")
    print("listening on", os.environ["GH_NATS_URL"], flush=True)
    while True:
        try:
            msgs = await sub.fetch(10, timeout=1)
        except NatsTimeout:
            continue
        for m in msgs:
            await asyncio.sleep(0.01)
            eid = str(uuid.uuid4())
            headers = {"ce-specversion": "1.0", "ce-id": eid, "ce-source": "urn:acme:reader",
                       "ce-type": "acme.climate.v1.Alarm",
                       "ce-datacontenttype": "application/json", "Nats-Msg-Id": eid}
            data = {"severity": "low", "reading": (m.headers or {}).get("ce-id")}
            await js.publish("acme.climate.v1.alarms", json.dumps(data).encode(), headers=headers)
            await m.ack()


asyncio.run(main())
