"""Read one stream back from each replica's own store, separately (issue 11 §3).

A cluster answers reads from the stream leader (``STREAM.MSG.GET``) or from whichever
replica a direct get's queue group picks, so neither says what *each* replica holds. This
reads every node's store instead: a copy of the node's stream directory is loaded by a
throwaway single nats-server (same binary) and read message by message.

Why a copy and a standalone server, on nats-server 2.15.1:

- the node's live store is never touched (the run goes on; a corrupt block stays as it is);
- a standalone server refuses a stream whose config says ``num_replicas > 1``
  ("replicas > 1 not supported in non-clustered mode"), so the copy's ``meta.inf`` is
  rewritten to one replica and its ``meta.sum`` (HighwayHash-64 keyed by the stream name,
  :mod:`harness.broker._highwayhash`) recomputed, else the server skips it as tampered;
- consumers (``obs/``) are left out: they are R3 too and not what is compared;
- the server loads the block files with its own recovery (checksums, truncated tails), so
  what it serves is what that replica would serve if it led: the history it would replicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.broker._highwayhash import stream_meta_sum

#: get requests in flight per replica read
_BATCH = 256
#: log lines of the throwaway server kept as evidence (its recovery warnings)
_MAX_LOG_LINES = 12


@dataclass
class ReplicaContent:
    """What one replica's store holds: seq -> (message id, content digest)."""

    node: str
    messages: dict[int, tuple[str, str]] = field(default_factory=dict)
    first_seq: int = 0
    last_seq: int = 0
    #: sequences in range whose read failed with something other than "not found"
    unreadable: set[int] = field(default_factory=set)
    #: the stream could not be read from this replica (no dir, server refused it...)
    error: str | None = None
    #: warnings and errors the throwaway server logged while loading the copy
    log: list[str] = field(default_factory=list)
    #: why this replica holds no stream at all (its directory or metafile is gone, e.g.
    #: after a power loss before the metafile was ever fsynced): it counts as empty
    absent: str | None = None


def message_identity(headers: dict[str, str] | None, subject: str, data: bytes) -> tuple[str,
                                                                                        str]:
    """(id, digest): the ``Nats-Msg-Id`` when there is one, else the digest itself."""
    digest = hashlib.sha256(subject.encode() + b"\0" + data).hexdigest()[:16]
    mid = (headers or {}).get("Nats-Msg-Id") or f"sha256:{digest}"
    return mid, digest


def find_stream_dir(store_dir: Path, stream: str) -> Path | None:
    """``<store>/jetstream/<account>/streams/<stream>`` (any account), or None."""
    found = sorted(store_dir.glob(f"jetstream/*/streams/{stream}"))
    return found[0] if found else None


def copy_as_single_replica(src: Path, dst_store: Path, stream: str) -> Path:
    """Copy stream dir ``src`` into ``dst_store`` (account ``$G``) as an R1 stream."""
    dst = dst_store / "jetstream" / "$G" / "streams" / stream
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("obs"))
    meta = dst / "meta.inf"
    cfg = json.loads(meta.read_bytes())
    cfg["num_replicas"] = 1
    raw = json.dumps(cfg, separators=(",", ":")).encode()
    meta.write_bytes(raw)
    (dst / "meta.sum").write_text(stream_meta_sum(stream, raw))
    return dst


async def read_store(store_dir: Path, stream: str, node: str, workdir: Path, *,
                     binary: str | Path | None = None) -> ReplicaContent:
    """Read ``stream`` from a copy of one node's ``store_dir`` (see the module doc)."""
    import nats

    from harness.broker.process import NatsServer

    out = ReplicaContent(node=node)
    src = await asyncio.to_thread(find_stream_dir, store_dir, stream)
    if src is None:
        out.absent = f"no directory for stream {stream} in the node's store"
        return out
    if not await asyncio.to_thread((src / "meta.inf").exists):
        # nats-server itself skips such a directory ("Missing stream metafile")
        out.absent = "the stream's directory has no meta.inf (nats-server skips it)"
        return out
    copy = workdir / node
    await asyncio.to_thread(shutil.rmtree, copy, ignore_errors=True)
    try:
        await asyncio.to_thread(copy_as_single_replica, src, copy, stream)
    except (OSError, ValueError) as exc:
        out.error = f"could not copy {src}: {type(exc).__name__}: {exc}"
        return out
    async with NatsServer(name=f"replica-{node}", store_dir=copy, binary=binary) as server:
        out.log = [ln for ln in server.node.log_text().splitlines()
                   if "[WRN]" in ln or "[ERR]" in ln][:_MAX_LOG_LINES]
        nc = await nats.connect(server.client_url, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=5.0)
            try:
                info = await js.stream_info(stream)
            except Exception as exc:
                out.error = f"the copy did not load: {type(exc).__name__}: {exc}"
                return out
            out.first_seq = info.state.first_seq
            out.last_seq = info.state.last_seq

            async def one(seq: int) -> None:
                try:
                    msg = await js.get_msg(stream, seq)
                except nats.js.errors.NotFoundError:
                    return  # deleted, or lost in recovery: absent from this replica
                except Exception:  # e.g. a checksum error on a damaged record
                    out.unreadable.add(seq)
                    return
                out.messages[seq] = message_identity(
                    dict(msg.headers or {}), msg.subject or "", msg.data or b"")

            seqs = list(range(out.first_seq, out.last_seq + 1)) if out.last_seq else []
            for i in range(0, len(seqs), _BATCH):
                await asyncio.gather(*(one(s) for s in seqs[i:i + _BATCH]))
        finally:
            await nc.close()
    shutil.rmtree(copy, ignore_errors=True)
    return out


async def live_states(nodes: list[Any], stream: str) -> dict[str, dict[str, Any]]:
    """Each running node's own view of ``stream`` (``/jsz``): messages, first/last seq."""
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if not node.running or node.paused:
            out[node.name] = {"running": False}
            continue
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            jsz = await node.monitor("/jsz?accounts=true&streams=true", timeout_s=1.0)
            for acc in jsz.get("account_details") or []:
                for sd in acc.get("stream_detail") or []:
                    if sd.get("name") == stream:
                        st = sd.get("state") or {}
                        out[node.name] = {"messages": st.get("messages"),
                                          "first_seq": st.get("first_seq"),
                                          "last_seq": st.get("last_seq")}
    return out


async def wait_converged(nodes: list[Any], stream: str, *,
                         timeout_s: float = 10.0) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Until every running node reports the same state for ``stream`` (bounded): replicas
    still catching up are not divergent yet. Returns (agreed, the last states seen)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = await live_states(nodes, stream)
        views = [tuple(sorted(s.items())) for s in states.values() if s.get("running", True)]
        if len(views) == len(nodes) and len(set(views)) == 1:
            return True, states
        if time.monotonic() >= deadline:
            return False, states
        await asyncio.sleep(0.2)


async def read_replicas(nodes: list[Any], stream: str, workdir: Path, *,
                        settle_timeout_s: float = 10.0, flush_timeout_s: float = 5.0,
                        ) -> tuple[list[ReplicaContent], bool, dict[str, dict[str, Any]]]:
    """Read ``stream`` from every node's store (``node.store_dir``), one after the other.

    Returns (contents per node, whether the live replicas agreed before the copy, their
    live states). Works on process nodes (the store is a directory on this machine, plain
    or on the storage-fault filesystem).

    A running node counts a message before its flusher has written it to the block file
    (writes are coalesced): a copy taken in that moment lacks the newest messages. So a
    copy that ends before the sequence the node itself reports is taken again, for up to
    ``flush_timeout_s``; what is still missing then is a finding.
    """
    converged, states = await wait_converged(nodes, stream, timeout_s=settle_timeout_s)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    contents = []
    try:
        for node in nodes:
            store = getattr(node, "store_dir", None)
            if store is None:
                contents.append(ReplicaContent(node=node.name, error="no local store dir"))
                continue
            reported = (states.get(node.name) or {}).get("last_seq") or 0
            deadline = time.monotonic() + flush_timeout_s
            try:
                while True:
                    content = await read_store(Path(store), stream, node.name, workdir,
                                               binary=getattr(node, "binary", None))
                    if (content.error or content.absent or content.last_seq >= reported
                            or time.monotonic() >= deadline):
                        break
                    await asyncio.sleep(0.2)
                contents.append(content)
            except Exception as exc:  # one unreadable replica is a finding, not a crash
                contents.append(ReplicaContent(node=node.name,
                                               error=f"{type(exc).__name__}: {exc}"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return contents, converged, states
