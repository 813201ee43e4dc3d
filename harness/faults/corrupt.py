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
store), offset, mode, bit and byte values, and the file's size before and after.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
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


def corrupt_block(store_dir: Path, stream: str, mode: str, seed: int) -> dict[str, Any]:
    """Damage one block file of ``stream`` under ``store_dir`` (the node must be stopped);
    returns what was done, for the journal. Raises FaultTargetError if there is no block."""
    files = block_files(store_dir, stream)
    if not files:
        raise FaultTargetError(
            f"corrupt: no non-empty message block of stream {stream!r} under {store_dir} "
            "(is the stream in the spec, and did anything write to it before the fault?)")
    rng = random.Random(seed)
    path = rng.choice(files)
    size = path.stat().st_size
    offset = min(size - 1, int(rng.random() * size))
    bit = rng.randrange(8)
    out: dict[str, Any] = {"file": str(path.relative_to(store_dir)), "mode": mode,
                           "offset": offset, "size_before": size, "seed": seed,
                           "blocks": len(files)}
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
    done = corrupt_block(Path(store), step.stream, step.mode, step.seed)
    platform.event("storage.corrupt", node=name, stream=step.stream, stopped=was_running,
                   **done)
    what = (f"flipped bit {done['bit']} of byte {done['offset']}" if step.mode == "bitflip"
            else f"truncated to {done['offset']} of {done['size_before']} bytes")
    detail = f"stopped {name}; {what} in {done['file']} (seed {step.seed})"

    async def restart() -> None:
        try:
            await node.restart()
        except HarnessError as exc:
            # Seen once on a loaded machine: the damaged node was not healthy within the
            # ready timeout. One more try, journalled, before the run gives up on it.
            platform.event("storage.corrupt_restart_retry", node=name,
                           error=f"{type(exc).__name__}: {exc}"[:500])
            await node.restart()

    if step.duration_s:
        return restart, detail + "; restart at heal"
    await restart()
    return None, detail + "; restarted"
