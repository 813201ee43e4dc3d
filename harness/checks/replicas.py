"""Replica divergence: compare what each replica of a stream holds (issue 11 §3).

Pure: takes each replica's contents (read from its own store, see
:mod:`harness.broker.replicas`) and the load's delivery log. A replica set whose members
hold different messages at the same sequence, or messages the others do not, serves
different histories depending on who leads: that is split-brain, here a measured outcome
(``divergent`` sequences, ``missing`` messages per node, acked messages ``lost`` per node),
not an anecdote.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from harness.broker.replicas import ReplicaContent
from harness.checks.observations import DeliveryLog
from harness.checks.result import CheckResult

#: ids or sequences listed per node in the journal; counts are always exact
MAX_LISTED = 20


class ReplicaAccount(BaseModel):
    """What the replicas check measured, per node (the journal's ``replicas``)."""

    stream: str
    nodes: list[str]
    #: sequences compared: up to the last one every running replica reported before the read
    compared_up_to: int = 0
    #: messages each replica holds, and its last sequence
    messages: dict[str, int]
    last_seq: dict[str, int]
    #: sequences a replica lists but cannot serve (a read error, e.g. a bad checksum)
    unreadable: dict[str, int] = {}
    #: sequences (up to the highest last_seq) where the replicas do not all hold the same
    #: message: absent on some, or different messages (the histories differ)
    divergent: int
    divergent_seqs: list[int] = []
    #: sequences held by two or more replicas with different messages
    conflicting: int = 0
    #: per node: messages (by id) other replicas hold and this one does not
    missing: dict[str, int] = {}
    missing_ids: dict[str, list[str]] = {}
    #: per node: acked load messages it does not hold (the delivery check, per replica);
    #: empty when the load did not publish into this stream
    lost: dict[str, int] = {}
    lost_ids: dict[str, list[str]] = {}
    #: replicas that could not be read, and why
    errors: dict[str, str] = {}
    #: replicas that hold no stream at all (counted as empty), and why
    absent: dict[str, str] = {}
    #: warnings the server logged loading each replica's copy (block recovery, checksums)
    recovery_log: dict[str, list[str]] = {}
    #: whether the running replicas reported the same state before they were read
    converged: bool = True
    live: dict[str, dict[str, Any]] = {}

    @property
    def split_brain(self) -> bool:
        """Replicas hold different histories."""
        return self.divergent > 0


def account_replicas(stream: str, contents: Sequence[ReplicaContent], log: DeliveryLog, *,
                     converged: bool = True, live: dict[str, dict[str, Any]] | None = None,
                     loaded: bool | None = None) -> ReplicaAccount:
    """Compare the replicas that could be read; see :class:`ReplicaAccount`.

    ``loaded``: whether the load published into this stream (then each replica's ``lost``
    counts every acked load message it lacks); None: guess it from the replicas' contents.
    """
    readable = [c for c in contents if c.error is None]
    # Replicas are copied one after the other while the cluster still takes writes (the
    # services publish on): compare only what every replica had when they last agreed.
    seen = [s["last_seq"] for s in (live or {}).values() if isinstance(s.get("last_seq"), int)]
    up_to = min(seen) if seen else min(
        (c.last_seq for c in readable if c.absent is None), default=0)
    divergent: list[int] = []
    conflicting = 0
    seqs = {q for q in set().union(*(c.messages.keys() for c in readable)) if q <= up_to}
    for c in readable:
        seqs |= {q for q in c.unreadable if q <= up_to}
    for seq in sorted(seqs):
        held = [c.messages.get(seq) if seq not in c.unreadable else ("?", "unreadable")
                for c in readable]
        if len(set(held)) > 1:
            divergent.append(seq)
            if len({h for h in held if h is not None}) > 1:
                conflicting += 1
    ids = {c.node: {mid for q, (mid, _) in c.messages.items() if q <= up_to}
           for c in readable}
    union: set[str] = set().union(*ids.values())
    missing = {n: sorted(union - have) for n, have in ids.items()}
    # The load's acked ids count against this stream only if the load published into it.
    if loaded is None:
        loaded = bool(union & log.attempted)
    lost = {n: sorted(log.acked - have) for n, have in ids.items()} if loaded else {}
    return ReplicaAccount(
        stream=stream,
        nodes=[c.node for c in contents],
        compared_up_to=up_to,
        messages={c.node: sum(1 for q in c.messages if q <= up_to) for c in readable},
        unreadable={c.node: len(c.unreadable) for c in readable if c.unreadable},
        last_seq={c.node: c.last_seq for c in readable},
        divergent=len(divergent),
        divergent_seqs=divergent[:MAX_LISTED],
        conflicting=conflicting,
        missing={n: len(v) for n, v in missing.items()},
        missing_ids={n: v[:MAX_LISTED] for n, v in missing.items() if v},
        lost={n: len(v) for n, v in lost.items()},
        lost_ids={n: v[:MAX_LISTED] for n, v in lost.items() if v},
        errors={c.node: c.error for c in contents if c.error is not None},
        absent={c.node: c.absent for c in contents if c.absent is not None},
        recovery_log={c.node: c.log for c in contents if c.log},
        converged=converged,
        live=live or {},
    )


def check_replicas(account: ReplicaAccount, *, max_divergent: int = 0,
                   name: str = "replicas") -> CheckResult:
    """At most ``max_divergent`` sequences differ across replicas, and every replica was
    read (an unreadable replica cannot be shown to agree)."""
    details: list[str] = []
    if account.divergent > max_divergent:
        kind = "split-brain: " if account.split_brain else ""
        details.append(
            f"{kind}replicas of {account.stream} hold different histories at "
            f"{account.divergent} sequence(s) ({account.conflicting} with different messages), "
            f"e.g. {account.divergent_seqs[:5]}")
        for node, n in account.missing.items():
            if n:
                details.append(f"{node} lacks {n} message(s) other replicas hold, e.g. "
                               f"{account.missing_ids.get(node, [])[:3]}")
    for node, n in account.lost.items():
        if n and account.divergent > max_divergent:
            details.append(f"{node} lacks {n} acked message(s)")
    for node, why in account.absent.items():
        if account.divergent > max_divergent:
            details.append(f"{node} holds no {account.stream} stream: {why}")
    for node, err in account.errors.items():
        details.append(f"{node}: replica not read: {err}")
    if not account.converged:
        details.append("note: the running replicas had not reported the same state within "
                       "the settle time (some may still have been catching up)")
    passed = account.divergent <= max_divergent and not account.errors
    return CheckResult(
        name=name,
        kind="replicas",
        passed=passed,
        expected={"divergent": f"<= {max_divergent}", "every replica read": True},
        observed={
            "divergent": account.divergent,
            "conflicting": account.conflicting,
            "split_brain": account.split_brain,
            "messages": account.messages,
            "missing": account.missing,
            "lost": account.lost,
        },
        details=details if not passed else [d for d in details if d.startswith("note")],
    )
