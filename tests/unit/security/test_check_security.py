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


LOG = '''\
[13413] 2026/11/27 18:51:10.762744 [ERR] 127.0.0.1:47018 - cid:32 - "v2.16.0:python3:qiki-probe-radar_sim" - "QIKI_APP/user:radar_sim" - Publish Violation - Subject "qiki.events.v1.x"
[13413] 2026/11/27 18:51:10.774586 [ERR] 127.0.0.1:47054 - cid:35 - "v2.16.0:python3:qiki-registrar" - "QIKI_APP/user:registrar" - Subscription Violation - Subject "qiki.radar.v1.>", SID 1
[13413] 2026/11/27 18:51:10.778265 [ERR] 127.0.0.1:47070 - cid:36 - "v2.16.0:python3:qiki-lagmon" - "QIKI_APP/user:lagmon" - Publish Violation - Subject "$JS.API.CONSUMER.DELETE.QIKI_EVENTS_V1.registrar-events"
[13413] 2026/11/27 18:51:10.780000 [INF] Server is ready
'''  # noqa: E501 - nats-server's own lines


def test_violations_in_the_server_log_except_the_probes_own() -> None:
    from harness.security.probes import violations_in_log

    found = violations_in_log(LOG)
    assert [(r.identity, r.action, r.subject) for r in found] == [
        ("registrar", "subscribe", "qiki.radar.v1.>"),
        ("lagmon", "publish", "$JS.API.CONSUMER.DELETE.QIKI_EVENTS_V1.registrar-events")]
    assert all(not r.passed for r in found)
    r = check_security([ProbeResult("anonymous", "refused", "refused", "ok"), *found])
    assert not r.passed
    assert r.details[0].startswith("registrar subscribe qiki.radar.v1.> (during the run): "
                                   "expected allowed, observed denied")
