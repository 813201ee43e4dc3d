"""HighwayHash-64 against the reference vectors (the replica reader signs meta.inf with it)."""

from __future__ import annotations

import pytest

from harness.broker._highwayhash import highwayhash64, stream_meta_sum

# google/highwayhash's kExpected64 for key bytes 0..31 over data bytes 0..n-1, n = 0..26:
# covers the empty input, every remainder branch (size & 16, size & 3) and a full packet.
EXPECTED64 = [
    0x907A56DE22C26E53, 0x7EAB43AAC7CDDD78, 0xB8D0569AB0B53D62, 0x5C6BEFAB8A463D80,
    0xF205A46893007EDA, 0x2B8A1668E4A94541, 0xBD4CCC325BEFCA6F, 0x4D02AE1738F59482,
    0xE1205108E55F3171, 0x32D2644EC77A1584, 0xF6E10ACDB103A90B, 0xC3BBF4615B415C15,
    0x243CC2040063FA9C, 0xA89A58CE65E641FF, 0x24B031A348455A23, 0x40793F86A449F33B,
    0xCFAB3489F97EB832, 0x19FE67D2C8C5C0E2, 0x04DD90A69C565CC2, 0x75D9518E2371C504,
    0x38AD9B1141D3DD16, 0x0264432CCD8A70E0, 0xA9DB5A6288683390, 0xD7B05492003F028C,
    0x205F615AEA59E51E, 0xEEE0C89621052884, 0x1BFC1A93A7284F4F,
]


@pytest.mark.parametrize("size", range(len(EXPECTED64)))
def test_reference_vectors(size: int) -> None:
    assert highwayhash64(bytes(range(32)), bytes(range(size))) == EXPECTED64[size]


def test_more_than_one_packet_and_a_short_tail() -> None:
    key = b"".join(i.to_bytes(8, "little") for i in (1, 2, 3, 4))
    assert highwayhash64(key, bytes(128 + i for i in range(33))) == 0x53C516CCE478CAD7
    assert highwayhash64(key, b"\xff") == 0x7858F24D2D79B2B2


def test_meta_sum_is_little_endian_hex_keyed_by_the_stream_name() -> None:
    # meta.inf and meta.sum of stream "S" as nats-server 2.15.1 wrote them would be needed
    # for a byte-for-byte check; tests/integration/broker/test_replicas.py compares with a
    # real server's sums. Here: shape and key dependence.
    a, b = stream_meta_sum("S", b"{}"), stream_meta_sum("T", b"{}")
    assert len(a) == 16 and int(a, 16) >= 0 and a != b


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32-byte key"):
        highwayhash64(b"short", b"")
