"""Publish steps, step names and events checks in the scenario model: bad combinations are
errors with key path and line, checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario.loader import ScenarioError, load_scenario, parse_scenario
from harness.scenario.model import EventsEntry, PublishEntry


def problems(text: str, path: str = "<string>") -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, path)
    return info.value.problems


def scenario(method: str, checks: str = "") -> str:
    return f"name: t\nmethod:\n{method}" + (f"checks:\n{checks}" if checks else "")


def test_a_custom_publish_and_an_events_check_load() -> None:
    s = parse_scenario(scenario(
        "  - publish: {name: gh, subject: acme.climate.v1.readings, type: acme.climate.v1.Reading,"
        " source: 'urn:acme', data: {temp_c: 21}, count: 5, rate_per_s: 10, at_s: 1}\n",
        "  - events: {type: acme.climate.v1.Reading, where: {temp_c: {gt: 20}}, after: gh,"
        " within_s: 3, min: 5, max: 5}\n"))
    step = s.method[0]
    assert isinstance(step, PublishEntry) and step.publish.data == {"temp_c": 21}
    assert step.publish.end_s() == pytest.approx(1.4)  # the fifth event at 1 + 4/10
    check = s.checks[0]
    assert isinstance(check, EventsEntry) and check.events.after_name() == "gh"


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("{type: t, data: {a: 1}, data_file: d.json}",
         "method[0].publish (line 3): give data or data_file, not both"),
        ("{malformed: [bad-data], type: t}",
         "method[0].publish (line 3): malformed events are built by the harness: type cannot "
         "be combined with malformed"),
        ("{valid: 3}", "method[0].publish (line 3): valid counts the good events mixed with "
         "malformed ones; without malformed, use count"),
        ("{data: {a: 1}}", "method[0].publish (line 3): custom data needs its CloudEvent type"),
        ("{subject: 'acme.*', type: t}",
         "method[0].publish.subject (line 3): subject 'acme.*' is not a publishable NATS subject"),
        ("{type: t, data: {day: 2026-11-27}}",
         "method[0].publish (line 3): data is not JSON-serialisable"),
        ("{type: t, rate_per_s: 0}", "method[0].publish.rate_per_s (line 3): Input should be "
         "greater than 0"),
        ("{name: 'has space'}", "method[0].publish.name (line 3): String should match pattern"),
    ],
)
def test_bad_publish_steps(step: str, expected: str) -> None:
    (problem,) = problems(scenario(f"  - publish: {step}\n"))
    assert problem.startswith(expected), problem


def test_duplicate_names_and_dangling_references_each_get_path_and_line() -> None:
    found = problems(scenario(
        "  - publish: {name: a, type: t}\n"
        "  - fault: {name: a, action: kill, target: 'service:registrar'}\n"
        "  - fault: {name: k, action: kill, target: 'service:registrar'}\n",
        "  - events: {after: nope}\n"
        "  - events: {after: {heal: k}}\n"))
    assert found == [
        "method[1].fault.name (line 4): duplicate step name 'a' (first at method[0])",
        "checks[0].events.after (line 7): no step named 'nope'; named steps: a, k",
        "checks[1].events.after.heal (line 8): step 'k' is not a fault with duration_s, so it "
        "is never healed; use after: NAME for its start",
    ]


def test_bad_events_checks() -> None:
    found = problems(scenario(
        "  - wait: {duration_s: 1}\n",
        "  - events: {min: 3, max: 1}\n"
        "  - events: {where: {severity: {above: 1}}}\n"
        "  - events: {within_s: 0}\n"))
    assert found[0] == "checks[0].events (line 5): max (1) is below min (3)"
    assert found[1].startswith("checks[1].events.where (line 6): where.severity: unknown "
                               "operator(s) above")
    assert found[2].startswith("checks[2].events.within_s (line 7): Input should be greater")


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ("max: 0", (0, 0)),  # "no such event": min starts at 0 when only max is given
        ("max: 3", (0, 3)),
        ("min: 2", (2, None)),
        ("type: t", (1, None)),  # neither: "at least one"
        ("min: 1, max: 0", None),  # an explicit min still has to fit under max
    ],
)
def test_min_defaults_to_zero_when_only_max_is_given(bounds: str,
                                                     expected: tuple[int, int | None] | None
                                                     ) -> None:
    text = scenario("  - wait: {duration_s: 1}\n", f"  - events: {{{bounds}}}\n")
    if expected is None:
        assert problems(text) == ["checks[0].events (line 5): max (0) is below min (1)"]
        return
    check = parse_scenario(text, "<string>").checks[0]
    assert isinstance(check, EventsEntry)
    assert (check.events.min, check.events.max) == expected


def test_steady_state_events_cannot_be_after_a_step() -> None:
    found = problems("name: t\nmethod:\n  - wait: {name: w, duration_s: 1}\nsteady_state:\n"
                     "  checks:\n    - events: {after: w}\n")
    assert found == ["steady_state.checks[0].events.after (line 6): steady-state checks run "
                     "outside the method: no 'after'"]


def test_data_file_is_relative_to_the_scenario_and_checked_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.yaml").write_text("temp_c: 21\n")
    (tmp_path / "data" / "bad.json").write_text("{nope")
    f = tmp_path / "s.yaml"
    f.write_text(scenario("  - publish: {type: t, data_file: data/ok.yaml}\n"
                          "  - publish: {type: t, data_file: data/bad.json}\n"
                          "  - publish: {type: t, data_file: data/missing.json}\n"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    p = info.value.problems
    assert len(p) == 2
    assert p[0].startswith("method[1].publish.data_file (line 4): data_file ") and \
        "bad.json' is not valid JSON" in p[0]
    assert p[1].startswith("method[2].publish.data_file (line 5): cannot read data_file ")
    assert "No such file" in p[1]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("{type: t, data: {a: 1}, data_file: d.json}",
         "method[0].load (line 3): give data or data_file, not both"),
        ("{type: t, data: {a: 1}, message_bytes: 512}",
         "method[0].load (line 3): message_bytes sizes the default payload"),
        ("{data: {a: 1}}", "method[0].load (line 3): custom data needs its CloudEvent type"),
        ("{type: t, data: {day: 2026-11-27}}",
         "method[0].load (line 3): data is not JSON-serialisable"),
    ],
)
def test_bad_load_event_forms(step: str, expected: str) -> None:
    body = step[1:-1]
    (problem,) = problems(scenario(f"  - load: {{duration_s: 1, rate_per_s: 10, {body}}}\n"))
    assert problem.startswith(expected), problem


def test_a_load_with_the_users_type_and_data_file(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('{"temp_c": 21}')
    f = tmp_path / "s.yaml"
    f.write_text(scenario("  - load: {duration_s: 1, rate_per_s: 10, type: acme.R, "
                          "data_file: r.json}\n"
                          "  - load: {duration_s: 1, rate_per_s: 10, type: acme.R, "
                          "data_file: missing.json}\n"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    (p,) = info.value.problems
    assert p.startswith("method[1].load.data_file (line 4): cannot read data_file "), p
