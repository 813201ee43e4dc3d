"""The gevent <-> asyncio bridge, under gevent's monkeypatching (in a subprocess, because
patching the pytest process would break everything else)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    from gevent import monkey
    monkey.patch_all()

    import asyncio
    import gevent
    from harness.load.bridge import AsyncBridge, BridgeError, BridgeTimeout

    bridge = AsyncBridge()
    bridge.start()
    assert bridge.running

    async def value(x):
        await asyncio.sleep(0.01)
        return x * 2

    assert bridge.run(value(21), timeout_s=10) == 42

    async def boom():
        raise KeyError("boom")

    try:
        bridge.run(boom(), timeout_s=10)
        raise SystemExit("no exception surfaced")
    except KeyError as e:
        assert "boom" in str(e)

    # real I/O inside the bridged loop while the process is monkeypatched
    async def echo_roundtrip():
        async def handle(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\\n")
        line = await reader.readline()
        writer.close()
        server.close()
        return line

    assert bridge.run(echo_roundtrip(), timeout_s=10) == b"ping\\n"

    # greenlets wait cooperatively: many in flight at once on the loop
    state = {"now": 0, "max": 0}
    async def track():
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.2)
        state["now"] -= 1
        return 1

    results = [g.value for g in gevent.joinall(
        [gevent.spawn(bridge.run, track(), 10) for _ in range(20)])]
    assert results == [1] * 20, results
    assert state["max"] == 20, state

    # a timeout cancels the coroutine
    cancelled = {"yes": False}
    async def slow():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled["yes"] = True
            raise

    try:
        bridge.run(slow(), timeout_s=0.2)
        raise SystemExit("no timeout")
    except BridgeTimeout:
        pass
    gevent.sleep(0.2)
    assert cancelled["yes"]

    # callback-style calls: resolved from the loop thread, errors of start() re-raised
    def start(resolve):
        asyncio.get_running_loop().call_later(0.01, resolve, 7)

    assert bridge.call(start, timeout_s=10) == 7

    def bad(resolve):
        raise ValueError("nope")

    try:
        bridge.call(bad, timeout_s=10)
        raise SystemExit("start() error not surfaced")
    except ValueError as e:
        assert "nope" in str(e)

    try:
        bridge.call(lambda resolve: None, timeout_s=0.2)
        raise SystemExit("never-resolved call did not time out")
    except BridgeTimeout:
        pass

    # stop ends the thread; later runs fail clearly instead of hanging
    pending = gevent.spawn(bridge.run, asyncio.sleep(30), 60)
    gevent.sleep(0.1)
    bridge.stop()
    assert not bridge.running
    pending.join(5)
    assert isinstance(pending.exception, BridgeError), pending.exception
    try:
        bridge.run(value(1))
        raise SystemExit("ran on a stopped bridge")
    except BridgeError as e:
        assert "not running" in str(e)
    print("BRIDGE-OK")
''')


def test_bridge_under_monkeypatching() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BRIDGE-OK" in proc.stdout
