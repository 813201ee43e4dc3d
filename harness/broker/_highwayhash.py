"""HighwayHash-64 in pure Python: the checksum nats-server keeps beside a stream's metafile.

nats-server refuses to load a stream whose ``meta.inf`` does not match ``meta.sum``
(``hex(HighwayHash64(key=sha256(stream dir name), meta.inf))``). The replica reader
(:mod:`harness.broker.replicas`) rewrites a copied ``meta.inf`` to one replica and must
write a matching sum; no packaged Python binding of HighwayHash exists on PyPI's list we
use, and the metafile is a few hundred bytes, so speed does not matter. Verified against
sums nats-server 2.15.1 wrote (tests/unit/broker/test_highwayhash.py).
"""

from __future__ import annotations

import hashlib

_M = (1 << 64) - 1
_INIT0 = (0xDBE6D5D5FE4CCE2F, 0xA4093822299F31D0, 0x13198A2E03707344, 0x243F6A8885A308D3)
_INIT1 = (0x3BD39E10CB0EF593, 0xC0ACF169B5F18A8C, 0xBE5466CF34E90C6C, 0x452821E638D01377)


def _zipper(v1: int, v0: int) -> tuple[int, int]:
    """ZipperMergeAndAdd's two addends (add1, add0) for lanes (v1, v0)."""
    add0 = (
        (((v0 & 0xFF000000) | (v1 & 0xFF00000000)) >> 24)
        | (((v0 & 0xFF0000000000) | (v1 & 0xFF000000000000)) >> 16)
        | (v0 & 0xFF0000)
        | ((v0 & 0xFF00) << 32)
        | ((v1 & 0xFF00000000000000) >> 8)
        | (v0 << 56)
    ) & _M
    add1 = (
        (((v1 & 0xFF000000) | (v0 & 0xFF00000000)) >> 24)
        | (v1 & 0xFF0000)
        | ((v1 & 0xFF0000000000) >> 16)
        | ((v1 & 0xFF00) << 24)
        | ((v0 & 0xFF000000000000) >> 8)
        | ((v1 & 0xFF) << 48)
        | (v0 & 0xFF00000000000000)
    ) & _M
    return add1, add0


class _State:
    def __init__(self, key: bytes) -> None:
        k = [int.from_bytes(key[i * 8:(i + 1) * 8], "little") for i in range(4)]
        self.mul0 = list(_INIT0)
        self.mul1 = list(_INIT1)
        self.v0 = [_INIT0[i] ^ k[i] for i in range(4)]
        self.v1 = [_INIT1[i] ^ (((k[i] >> 32) | (k[i] << 32)) & _M) for i in range(4)]

    def update(self, lanes: list[int]) -> None:
        v0, v1, mul0, mul1 = self.v0, self.v1, self.mul0, self.mul1
        for i in range(4):
            v1[i] = (v1[i] + mul0[i] + lanes[i]) & _M
            mul0[i] ^= ((v1[i] & 0xFFFFFFFF) * (v0[i] >> 32)) & _M
            v0[i] = (v0[i] + mul1[i]) & _M
            mul1[i] ^= ((v0[i] & 0xFFFFFFFF) * (v1[i] >> 32)) & _M
        for hi, lo, tgt in ((1, 0, v0), (3, 2, v0)):
            a1, a0 = _zipper(v1[hi], v1[lo])
            tgt[hi] = (tgt[hi] + a1) & _M
            tgt[lo] = (tgt[lo] + a0) & _M
        for hi, lo, tgt in ((1, 0, v1), (3, 2, v1)):
            a1, a0 = _zipper(v0[hi], v0[lo])
            tgt[hi] = (tgt[hi] + a1) & _M
            tgt[lo] = (tgt[lo] + a0) & _M

    def update_packet(self, packet: bytes) -> None:
        self.update([int.from_bytes(packet[i * 8:(i + 1) * 8], "little") for i in range(4)])

    def update_remainder(self, rest: bytes) -> None:
        size = len(rest)
        mod4 = size & 3
        whole = size & ~3
        for i in range(4):
            self.v0[i] = (self.v0[i] + ((size << 32) + size)) & _M

        def rot32(x: int) -> int:
            return ((x << size) | (x >> (32 - size))) & 0xFFFFFFFF if size else x

        self.v1 = [rot32(x & 0xFFFFFFFF) | (rot32(x >> 32) << 32) for x in self.v1]
        packet = bytearray(32)
        packet[:whole] = rest[:whole]
        tail = rest[whole:]
        if size & 16:
            for i in range(4):
                packet[28 + i] = rest[whole + i + mod4 - 4]
        elif mod4:
            packet[16] = tail[0]
            packet[17] = tail[mod4 >> 1]
            packet[18] = tail[mod4 - 1]
        self.update_packet(bytes(packet))

    def finalize64(self) -> int:
        for _ in range(4):
            v0 = self.v0
            self.update([((v0[j] >> 32) | (v0[j] << 32)) & _M for j in (2, 3, 0, 1)])
        return (self.v0[0] + self.v1[0] + self.mul0[0] + self.mul1[0]) & _M


def highwayhash64(key: bytes, data: bytes) -> int:
    """HighwayHash-64 of ``data`` under a 32-byte ``key``."""
    if len(key) != 32:
        raise ValueError(f"HighwayHash needs a 32-byte key, got {len(key)} bytes")
    st = _State(key)
    full = len(data) & ~31
    for off in range(0, full, 32):
        st.update_packet(data[off:off + 32])
    if len(data) & 31:
        st.update_remainder(data[full:])
    return st.finalize64()


def stream_meta_sum(stream_dir_name: str, meta_inf: bytes) -> str:
    """The ``meta.sum`` text nats-server expects for ``meta.inf`` of stream dir ``name``."""
    key = hashlib.sha256(stream_dir_name.encode()).digest()
    return highwayhash64(key, meta_inf).to_bytes(8, "little").hex()
