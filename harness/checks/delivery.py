"""Delivery accounting as Jepsen's queue checker classifies it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from pydantic import BaseModel

from harness.checks.observations import DeliveryLog
from harness.checks.result import CheckResult

#: Ids listed per class in the journal; the counts are always exact.
MAX_IDS = 20


class DeliveryAccount(BaseModel):
    """Counts per class, plus a sample of ids for each non-empty bad class."""

    attempted: int
    acked: int
    stored: int
    lost: int
    duplicated: int
    unexpected: int
    recovered: int
    lost_ids: list[str] = []
    duplicated_ids: list[str] = []
    unexpected_ids: list[str] = []


def account_delivery(log: DeliveryLog, stored: Mapping[str, int]) -> DeliveryAccount:
    """Classify ids: lost = acked but never stored; duplicated = stored more than once;
    unexpected = stored but never attempted; recovered = stored though not acked (the ack was
    lost, not the message). ``stored`` maps id -> times stored, restricted by the caller to
    the ids the load could have produced (its subjects or sources)."""
    counts = Counter(dict(stored))
    stored_set = {i for i, n in counts.items() if n > 0}
    lost = sorted(log.acked - stored_set)
    dup = sorted(i for i, n in counts.items() if n > 1)
    unexpected = sorted(stored_set - log.attempted)
    recovered = (stored_set & log.attempted) - log.acked
    return DeliveryAccount(
        attempted=len(log.attempted),
        acked=len(log.acked),
        stored=len(stored_set),
        lost=len(lost),
        duplicated=len(dup),
        unexpected=len(unexpected),
        recovered=len(recovered),
        lost_ids=lost[:MAX_IDS],
        duplicated_ids=dup[:MAX_IDS],
        unexpected_ids=unexpected[:MAX_IDS],
    )


def check_delivery(
    account: DeliveryAccount,
    *,
    max_lost: int = 0,
    max_duplicated: int = 0,
    max_unexpected: int = 0,
    min_acked: int = 1,
    name: str = "delivery",
) -> CheckResult:
    """Lost, duplicated and unexpected stay within their budgets (zero by default).

    ``min_acked`` keeps the check honest: with nothing acked, "nothing lost" means nothing.
    """
    details: list[str] = []
    if account.lost > max_lost:
        details.append(f"lost {account.lost} acked message(s), e.g. {account.lost_ids[:5]}")
    if account.duplicated > max_duplicated:
        details.append(
            f"{account.duplicated} message(s) stored more than once, "
            f"e.g. {account.duplicated_ids[:5]}"
        )
    if account.unexpected > max_unexpected:
        details.append(
            f"{account.unexpected} stored message(s) never attempted, "
            f"e.g. {account.unexpected_ids[:5]}"
        )
    if account.acked < min_acked:
        details.append(f"only {account.acked} message(s) acked, expected at least {min_acked}")
    return CheckResult(
        name=name,
        kind="delivery",
        passed=not details,
        expected={
            "lost": f"<= {max_lost}",
            "duplicated": f"<= {max_duplicated}",
            "unexpected": f"<= {max_unexpected}",
            "acked": f">= {min_acked}",
        },
        observed=account.model_dump(exclude={"lost_ids", "duplicated_ids", "unexpected_ids"}),
        details=details,
    )
