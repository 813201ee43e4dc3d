"""A tiny user service with plain nats-py: on every start it raises an alarm (as a real
controller would after losing its state), then idles. GH_NATS_URL: where NATS is."""

import asyncio
import json
import os
import uuid

import nats


async def main() -> None:
    nc = await nats.connect(os.environ["GH_NATS_URL"])
    js = nc.jetstream()
    print("listening on", os.environ["GH_NATS_URL"], flush=True)
    eid = str(uuid.uuid4())
    headers = {"ce-specversion": "1.0", "ce-id": eid, "ce-source": "urn:acme:greenhouse",
               "ce-type": "acme.climate.v1.Alarm", "ce-datacontenttype": "application/json",
               "Nats-Msg-Id": eid}
    data = {"severity": "high", "reason": "restarted", "zone": {"id": 3}}
    await js.publish("acme.climate.v1.alarms", json.dumps(data).encode(), headers=headers)
    await asyncio.Event().wait()


asyncio.run(main())
