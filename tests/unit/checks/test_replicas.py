"""The replicas check without NATS: per-node contents in, divergence and losses out."""

from __future__ import annotations

from harness.broker.replicas import ReplicaContent, message_identity
from harness.checks.observations import DeliveryLog
from harness.checks.replicas import account_replicas, check_replicas


def _replica(node: str, seqs: range | list[int], *, other: dict[int, str] | None = None,
             last: int | None = None) -> ReplicaContent:
    msgs = {}
    for q in seqs:
        mid = (other or {}).get(q, f"id-{q}")
        msgs[q] = message_identity({"Nats-Msg-Id": mid}, "s", mid.encode())
    return ReplicaContent(node=node, messages=msgs, first_seq=1,
                          last_seq=last if last is not None else max(seqs, default=0))


def _log(n: int) -> DeliveryLog:
    ids = {f"id-{q}" for q in range(1, n + 1)}
    return DeliveryLog(attempted=set(ids), acked=set(ids))


def test_identical_replicas_pass() -> None:
    reps = [_replica(n, range(1, 11)) for n in ("n1", "n2", "n3")]
    acc = account_replicas("S", reps, _log(10))
    res = check_replicas(acc)
    assert res.passed and acc.divergent == 0 and not acc.split_brain
    assert acc.messages == {"n1": 10, "n2": 10, "n3": 10}
    assert acc.lost == {"n1": 0, "n2": 0, "n3": 0}


def test_a_replica_missing_a_range_is_split_brain_with_its_losses_named() -> None:
    reps = [_replica("n1", range(1, 11)), _replica("n2", list(range(1, 6)), last=10),
            _replica("n3", range(1, 11))]
    acc = account_replicas("S", reps, _log(10))
    res = check_replicas(acc)
    assert not res.passed and acc.split_brain
    assert acc.divergent == 5 and acc.divergent_seqs == [6, 7, 8, 9, 10]
    assert acc.missing == {"n1": 0, "n2": 5, "n3": 0}
    assert acc.missing_ids["n2"] == ["id-10", "id-6", "id-7", "id-8", "id-9"]
    assert acc.lost["n2"] == 5 and acc.conflicting == 0
    assert res.details[0].startswith("split-brain: ")
    assert any("n2 lacks 5 message(s)" in d for d in res.details)
    # a budget that covers it passes, and says nothing is wrong
    assert check_replicas(acc, max_divergent=5).passed


def test_different_messages_at_one_sequence_conflict() -> None:
    reps = [_replica("n1", range(1, 4)), _replica("n2", range(1, 4), other={2: "x"}),
            _replica("n3", range(1, 4))]
    acc = account_replicas("S", reps, _log(3))
    assert acc.divergent == 1 and acc.conflicting == 1
    assert acc.missing["n2"] == 1 and acc.missing["n1"] == 1  # each lacks the other's


def test_messages_written_after_the_replicas_agreed_are_not_compared() -> None:
    reps = [_replica("n1", range(1, 11)), _replica("n2", range(1, 13)),
            _replica("n3", range(1, 14))]
    live = {n: {"messages": 10, "first_seq": 1, "last_seq": 10} for n in ("n1", "n2", "n3")}
    acc = account_replicas("S", reps, _log(10), live=live)
    assert acc.compared_up_to == 10 and acc.divergent == 0 and check_replicas(acc).passed


def test_unreadable_sequences_and_unread_replicas_fail() -> None:
    bad = _replica("n2", range(1, 6))
    bad.unreadable = {3}
    del bad.messages[3]
    acc = account_replicas("S", [_replica("n1", range(1, 6)), bad], _log(5))
    assert acc.divergent == 1 and acc.unreadable == {"n2": 1}
    gone = ReplicaContent(node="n3", error="no directory for stream S")
    acc2 = account_replicas("S", [_replica("n1", range(1, 6)), gone], _log(5))
    res = check_replicas(acc2)
    assert not res.passed and acc2.errors == {"n3": "no directory for stream S"}
    assert any("n3: replica not read" in d for d in res.details)


def test_losses_are_not_counted_against_a_stream_the_load_did_not_write() -> None:
    reps = [_replica(n, range(1, 4)) for n in ("n1", "n2")]
    log = DeliveryLog(attempted={"other-1"}, acked={"other-1"})
    assert account_replicas("S", reps, log).lost == {}


def test_identity_without_msg_id_is_the_content_digest() -> None:
    a = message_identity(None, "s", b"x")
    assert a[0] == f"sha256:{a[1]}" and message_identity({}, "s", b"y") != a


def test_a_replica_without_its_stream_is_empty_and_lacks_every_acked_message() -> None:
    gone = ReplicaContent(node="n2", absent="the stream's directory has no meta.inf")
    acc = account_replicas("S", [_replica("n1", range(1, 4)), gone], _log(3), loaded=True)
    res = check_replicas(acc)
    assert acc.divergent == 3 and acc.missing["n2"] == 3 and acc.lost["n2"] == 3
    assert acc.absent == {"n2": "the stream's directory has no meta.inf"} and not acc.errors
    assert any("n2 holds no S stream" in d for d in res.details)


def test_loaded_says_the_load_wrote_here_even_when_no_replica_kept_any_of_it() -> None:
    reps = [_replica(n, [1], other={1: "service-event"}) for n in ("n1", "n2")]
    acc = account_replicas("S", reps, _log(5), loaded=True)
    assert acc.lost == {"n1": 5, "n2": 5} and acc.divergent == 0
