"""The security check judges probe results; the scenario model reads ``security:``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.checks.security import check_security
from harness.scenario.model import SecurityCheck, SecurityEntry
from harness.security.probes import ProbeResult, applicable_probes


def _perm(observed: str, expect: str = "denied") -> ProbeResult:
    return ProbeResult("permission", expect, observed, "why",  # type: ignore[arg-type]
                       identity="radar_sim", action="publish", subject="qiki.events.v1.x")


def test_every_probe_as_expected_passes() -> None:
    r = check_security([ProbeResult("anonymous", "refused", "refused", "Authorization"),
                        _perm("denied")])
    assert r.passed and r.kind == "security"
    assert r.observed == {"anonymous": "refused", "radar_sim publish qiki.events.v1.x": "denied"}


def test_an_allowed_step_that_must_be_denied_fails_naming_it() -> None:
    r = check_security([_perm("allowed")])
    assert not r.passed
    assert r.details[0].startswith("radar_sim publish qiki.events.v1.x: expected denied, "
                                   "observed allowed")


def test_an_error_is_not_a_pass() -> None:
    assert not check_security([ProbeResult("anonymous", "refused", "error", "control failed")
                               ]).passed


def test_nothing_probed_fails_with_a_hint() -> None:
    r = check_security([ProbeResult("wrong_credentials", "refused", "skipped", "no creds")],
                       mode="none")
    assert not r.passed and "no probe applies" in r.details[0]


def test_applicable_probes_follow_the_mode() -> None:
    assert applicable_probes("none", tls=False, verify_client=False) == []
    assert applicable_probes("none", tls=True, verify_client=True) == [
        "plain_tcp", "no_client_cert"]
    assert applicable_probes("accounts", tls=False, verify_client=False) == [
        "anonymous", "wrong_credentials"]


def test_model_reads_as_and_one_action() -> None:
    e = SecurityEntry.model_validate({"security": {"permissions": [
        {"as": "radar_sim", "publish": "qiki.events.v1.x", "expect": "denied"}]}})
    assert e.security.permissions[0].as_ == "radar_sim"
    assert e.security.probes is None
    with pytest.raises(ValidationError, match="exactly one of publish"):
        SecurityCheck.model_validate({"permissions": [
            {"as": "x", "publish": "a", "subscribe": "b", "expect": "denied"}]})
    with pytest.raises(ValidationError):
        SecurityCheck.model_validate({"probes": ["anonymus"]})
