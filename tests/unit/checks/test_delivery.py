"""Delivery accounting: each Jepsen class, and the check catching loss and duplicates."""

from __future__ import annotations

from harness.checks import DeliveryLog, account_delivery, check_delivery


def log(attempted: set[str], acked: set[str]) -> DeliveryLog:
    return DeliveryLog(attempted=attempted, acked=acked, failed=attempted - acked)


def test_clean_run_passes() -> None:
    acc = account_delivery(log({"a", "b"}, {"a", "b"}), {"a": 1, "b": 1})
    assert (acc.lost, acc.duplicated, acc.unexpected, acc.recovered) == (0, 0, 0, 0)
    assert check_delivery(acc).passed


def test_classifies_every_kind() -> None:
    acc = account_delivery(
        log({"a", "b", "c", "d"}, {"a", "b", "c"}),
        {"a": 2, "c": 1, "d": 1, "zz": 1},
    )
    assert acc.lost == 1 and acc.lost_ids == ["b"]
    assert acc.duplicated == 1 and acc.duplicated_ids == ["a"]
    assert acc.unexpected == 1 and acc.unexpected_ids == ["zz"]
    assert acc.recovered == 1  # d was stored though its ack never came
    result = check_delivery(acc)
    assert not result.passed
    text = " ".join(result.details)
    assert "lost 1" in text and "'b'" in text
    assert "more than once" in text and "never attempted" in text


def test_budget_allows_some_loss() -> None:
    acc = account_delivery(log({"a", "b"}, {"a", "b"}), {"a": 1})
    assert not check_delivery(acc).passed
    assert check_delivery(acc, max_lost=1).passed


def test_nothing_acked_is_not_a_pass() -> None:
    acc = account_delivery(log({"a"}, set()), {})
    result = check_delivery(acc)
    assert not result.passed
    assert "acked" in result.details[0]


def test_zero_count_entries_are_not_stored() -> None:
    acc = account_delivery(log({"a"}, {"a"}), {"a": 0})
    assert acc.lost == 1
