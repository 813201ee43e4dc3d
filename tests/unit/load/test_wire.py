"""The injector's minimal protocol parser, fed by hand (a fake transport, no server)."""

from __future__ import annotations

from typing import Any

from harness.load._wire import WireClient, _Proto


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def make() -> tuple[_Proto, list[tuple[bytes, bytes, bytes | None]], FakeTransport]:
    client = WireClient(["nats://127.0.0.1:1"])
    got: list[tuple[bytes, bytes, bytes | None]] = []
    client.inbox = "_INBOX.abc"
    client._prefix_len = len("_INBOX.abc.")
    client._on_reply_cb = lambda tail, payload, status: got.append((tail, payload, status))
    proto = _Proto(client)
    t = FakeTransport()
    proto.connection_made(t)  # type: ignore[arg-type]
    return proto, got, t


async def test_msg_frames_split_anywhere_are_reassembled() -> None:
    proto, got, _t = make()
    ack = b'{"stream":"S","seq":7}'
    wire = (b"MSG _INBOX.abc.41 1 %d\r\n%b\r\n" % (len(ack), ack)) * 3
    for i in range(len(wire)):  # one byte at a time: the worst split
        proto.data_received(wire[i:i + 1])
    assert got == [(b"41", ack, None)] * 3
    assert proto.buf == bytearray()


async def test_no_responders_status_is_reported() -> None:
    proto, got, _t = make()
    hdr = b"NATS/1.0 503\r\n\r\n"
    proto.data_received(b"HMSG _INBOX.abc.9 1 %d %d\r\n%b\r\n" % (len(hdr), len(hdr), hdr))
    assert got == [(b"9", b"", b"503")]


async def test_ping_is_answered_and_info_parsed() -> None:
    proto, got, t = make()
    proto.data_received(b'INFO {"server_id":"x","headers":true}\r\nPING\r\n+OK\r\n')
    assert t.written == [b"PONG\r\n"]
    info: Any = proto.info.result()
    assert info["headers"] is True
    assert got == []


async def test_server_error_after_connect_is_recorded() -> None:
    proto, _got, _t = make()
    proto.data_received(b"-ERR 'Maximum Payload Violation'\r\n")
    assert proto.owner.server_errors == ["Maximum Payload Violation"]
