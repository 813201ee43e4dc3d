"""The ``corrupt`` fault: damage one message block of a stream on a stopped node (issue 11).

Jepsen (NATS 2.12.1) flipped one bit in, or truncated, one ``.blk`` file on one node and saw
acked writes lost and replicas serve different histories. This does the same, reproducibly:

1. the node is stopped (SIGTERM, a clean shutdown: the damage is the only fault);
2. one block file of the stream (``<store>/jetstream/<account>/streams/<S>/msgs/*.blk``,
   non-empty, sorted by name) and one offset in it are picked by ``random.Random(seed)``;
   the offset is drawn as a fraction of the file's size, so the same seed lands at the same
   relative place even when a run wrote a few bytes more;
3. ``bitflip``: one bit of the byte at that offset is inverted; ``truncate``: the file is cut
   at that offset. The change is fsynced, written through the node's store path (on the
   storage-fault filesystem too, where it is then durable, not undone by a power loss);
4. the node restarts at once, or at the heal when ``duration_s`` is set.

The journal gets a ``storage.corrupt`` event with the node, file (relative to the node's
store), offset, mode, bit and byte values, the file's size before and after, and which
record and field the offset fell in (``record_seq``, ``field``).

Where the damage lands decides what the server does with it, so ``region: payload`` draws
the offset among the bytes of message payloads only (the same seed, the same relative place
among them). Measured on nats-server 2.15.1: a flipped payload bit goes unnoticed on the
restart (the index written at the clean shutdown is trusted) and the replica silently holds
nothing from that record on; a flipped bit in a record's sequence number made the restarted
server loop in its block index for as long as we waited (CPU-bound, never ready: a node that
does not come back).
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import HarnessError, SetupError
from harness.faults.engine import FaultTargetError, Heal, register_fault, resolve_process

if TYPE_CHECKING:
    from harness.platform import Platform
    from harness.scenario.model import FaultStep


def block_files(store_dir: Path, stream: str) -> list[Path]:
    """The stream's non-empty message block files in ``store_dir``, in a stable order."""
    files = [p for p in store_dir.glob(f"jetstream/*/streams/{stream}/msgs/*.blk")
             if p.stat().st_size > 0]
    return sorted(files, key=lambda p: (p.parent.parent.parent.parent.name,
                                        int(p.stem) if p.stem.isdigit() else 0, p.name))


#: A message record's fixed header in a block file (nats-server's filestore, little-endian):
#: length u32 (bit 31: the record has headers), sequence u64 (bit 63: erased), timestamp
#: i64, subject length u16; then the subject, [headers length u32, headers], the payload and
#: an 8-byte checksum. The length counts the whole record.
_RECORD = struct.Struct("<IQqH")
_CHECKSUM = 8
_HAS_HEADERS = 1 << 31
_ERASED = 1 << 63


@dataclass(frozen=True)
class BlockRecord:
    """One message record of a block file: where each of its fields lies."""

    seq: int
    erased: bool
    #: (field name, first byte, end) in file order, covering the whole record
    fields: tuple[tuple[str, int, int], ...]

    @property
    def payload(self) -> tuple[int, int]:
        """The payload's byte range (empty for a record without one)."""
        return next((a, b) for name, a, b in self.fields if name == "payload")


def block_records(data: bytes) -> list[BlockRecord]:
    """The records of a block file's bytes, from the start up to the first that does not
    parse (a torn tail, or a compressed or encrypted block: then none)."""
    out: list[BlockRecord] = []
    at = 0
    while at + _RECORD.size + _CHECKSUM <= len(data):
        rl, seq, _ts, slen = _RECORD.unpack_from(data, at)
        length = rl & ~_HAS_HEADERS
        end = at + length
        subject = at + _RECORD.size + slen
        if length < _RECORD.size + _CHECKSUM or end > len(data) or subject > end - _CHECKSUM:
            break
        fields = [("length", at, at + 4), ("sequence", at + 4, at + 12),
                  ("timestamp", at + 12, at + 20), ("subject length", at + 20, at + 22),
                  ("subject", at + 22, subject)]
        payload = subject
        if rl & _HAS_HEADERS:
            if subject + 4 > end - _CHECKSUM:
                break
            (hlen,) = struct.unpack_from("<I", data, subject)
            payload = subject + 4 + hlen
            if payload > end - _CHECKSUM:
                break
            fields += [("headers length", subject, subject + 4),
                       ("headers", subject + 4, payload)]
        fields += [("payload", payload, end - _CHECKSUM), ("checksum", end - _CHECKSUM, end)]
        out.append(BlockRecord(seq=seq & ~_ERASED, erased=bool(seq & _ERASED),
                               fields=tuple(fields)))
        at = end
    return out


def locate(records: list[BlockRecord], offset: int) -> dict[str, Any]:
    """Which record and field ``offset`` falls in (``field: unparsed`` past the records)."""
    for r in records:
        for name, a, b in r.fields:
            if a <= offset < b:
                return {"record_seq": r.seq, "field": name}
    return {"record_seq": None, "field": "unparsed"}


def _payload_offset(records: list[BlockRecord], fraction: float) -> int | None:
    """The payload byte at ``fraction`` of all payload bytes of live records, in order."""
    spans = [r.payload for r in records if not r.erased and r.payload[1] > r.payload[0]]
    total = sum(b - a for a, b in spans)
    if not total:
        return None
    k = min(total - 1, int(fraction * total))
    for a, b in spans:
        if k < b - a:
            return a + k
        k -= b - a
    raise AssertionError("unreachable")


def corrupt_block(store_dir: Path, stream: str, mode: str, seed: int,
                  region: Literal["any", "payload"] = "any") -> dict[str, Any]:
    """Damage one block file of ``stream`` under ``store_dir`` (the node must be stopped);
    returns what was done, for the journal. Raises FaultTargetError if there is no block
    (or, with ``region: payload``, no payload byte in the chosen one)."""
    files = block_files(store_dir, stream)
    if not files:
        raise FaultTargetError(
            f"corrupt: no non-empty message block of stream {stream!r} under {store_dir} "
            "(is the stream in the spec, and did anything write to it before the fault?)")
    rng = random.Random(seed)
    path = rng.choice(files)
    size = path.stat().st_size
    fraction = rng.random()
    records = block_records(path.read_bytes())
    if region == "payload":
        at = _payload_offset(records, fraction)
        if at is None:
            raise FaultTargetError(
                f"corrupt: region payload: block {path.relative_to(store_dir)} of stream "
                f"{stream!r} holds no message payload byte that parses (seed {seed})")
        offset = at
    else:
        offset = min(size - 1, int(fraction * size))
    bit = rng.randrange(8)
    out: dict[str, Any] = {"file": str(path.relative_to(store_dir)), "mode": mode,
                           "region": region, "offset": offset, "size_before": size,
                           "seed": seed, "blocks": len(files), **locate(records, offset)}
    fd = os.open(path, os.O_RDWR)
    try:
        if mode == "bitflip":
            old = os.pread(fd, 1, offset)[0]
            new = old ^ (1 << bit)
            os.pwrite(fd, bytes([new]), offset)
            out.update(bit=bit, byte_before=old, byte_after=new)
        else:
            os.ftruncate(fd, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    out["size_after"] = path.stat().st_size
    return out


@register_fault("broker", "corrupt")
async def _corrupt(platform: Platform, step: FaultStep, target: str) -> tuple[Heal | None, str]:
    """Stop the node, damage one block of ``step.stream``, restart it (now or at heal)."""
    node, name = await resolve_process(platform, target)
    store = getattr(node, "store_dir", None)
    if store is None:
        raise FaultTargetError(f"fault corrupt {target!r}: node {name} has no store on this "
                               "machine (process backend only)")
    was_running = bool(getattr(node, "running", True))
    if was_running:
        await node.stop()  # type: ignore[attr-defined]
    assert step.stream is not None  # the model requires it for corrupt
    done = corrupt_block(Path(store), step.stream, step.mode, step.seed, step.region)
    platform.event("storage.corrupt", node=name, stream=step.stream, stopped=was_running,
                   **done)
    what = (f"flipped bit {done['bit']} of byte {done['offset']}" if step.mode == "bitflip"
            else f"truncated to {done['offset']} of {done['size_before']} bytes")
    where = (f"the {done['field']} of record {done['record_seq']}"
             if done["record_seq"] is not None else "no record that parses")
    detail = f"stopped {name}; {what} ({where}) in {done['file']} (seed {step.seed})"

    async def restart() -> None:
        try:
            await node.restart()
        except HarnessError as exc:
            # Not healthy within the ready timeout: a loaded machine, or the damage itself
            # (a flipped sequence number keeps nats-server 2.15.1 in its restore). One more
            # try, journalled, before the run gives up on the node.
            platform.event("storage.corrupt_restart_retry", node=name,
                           error=f"{type(exc).__name__}: {exc}"[:500])
            try:
                await node.restart()
            except HarnessError as again:
                raise SetupError(
                    f"{name} did not come back after the corruption ({what}: {where} in "
                    f"{done['file']}, seed {step.seed}, region {step.region}); the damage "
                    f"itself can keep nats-server from starting (region: payload keeps it "
                    f"in message payloads).\n{again}") from again

    if step.duration_s:
        return restart, detail + "; restart at heal"
    await restart()
    return None, detail + "; restarted"
