"""BotSpec format 2: a platform that is not QIKI's, and every validation rule on a bad spec."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.botspec import (
    DEFAULT_BOTSPEC_PATH,
    BotSpecError,
    generate,
    load_botspec,
    load_runtime_config,
    parse_botspec,
)

#: The greenhouse platform's spec, shared with the provisioning tests on a real server.
ACME = (Path(__file__).resolve().parents[2] / "data" / "acme-v2.yaml").read_text()


@pytest.fixture
def acme_dir(tmp_path: Path) -> Path:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "reading.schema.json").write_text('{"type": "object"}')
    return tmp_path


def _problems(text: str, base: Path) -> list[tuple[str, int | None, str]]:
    with pytest.raises(BotSpecError) as info:
        parse_botspec(text, source="acme.yaml", base_dir=base)
    return [(p.path, p.line, p.message) for p in info.value.problems]


def _one(text: str, base: Path) -> tuple[str, int | None, str]:
    problems = _problems(text, base)
    assert len(problems) == 1, problems
    return problems[0]


def test_a_user_platform_generates_its_own_layout(acme_dir: Path) -> None:
    spec = parse_botspec(ACME, source="acme.yaml", base_dir=acme_dir)
    config = generate(spec)
    assert [(s.name, s.subjects, s.storage) for s in config.streams] == [
        ("ACME_CLIMATE", ["acme.climate.v1.>"], "memory"), ("ACME_DLQ", ["acme.dlq.>"], "file")]
    assert config.streams[0].max_msg_size == 65536
    (c,) = config.consumers
    assert (c.durable, c.filter_subjects, c.max_deliver, c.lag_threshold) == (
        "climate-reader", ["acme.climate.v1.readings"], 3, 50)
    assert config.channels == {"Reading": ["acme.climate.v1.readings"],
                               "Alarm": ["acme.climate.v1.alarms"]}
    assert config.channel_types == {"Reading": ["acme.climate.v1.Reading"],
                                    "Alarm": ["acme.climate.v1.Alarm"]}
    assert config.channel_of_type("acme.climate.v1.Alarm") == "Alarm"
    reading = config.contracts["acme.climate.v1.Reading"]
    assert (reading.kind, reading.target) == (
        "json_schema", str((acme_dir / "schemas" / "reading.schema.json").resolve()))
    assert config.contracts["acme.climate.v1.Alarm"].kind == "pydantic"
    assert config.dead_letter == "acme.dlq.registrar"
    assert [r.code for r in config.codes.rules] == [201, 702]
    assert config.coverage_problems() == []
    # QIKI's reference-service subjects do not exist here: nothing QIKI leaks in.
    assert config.subjects.all() == ["acme.dlq.registrar"]
    assert not any("qiki" in s for s in config.all_publish_subjects())
    assert config.lagmon.watch[0].lag_threshold == 50


def test_the_shipped_spec_is_version_2_and_holds_the_qiki_layout() -> None:
    spec = load_botspec(DEFAULT_BOTSPEC_PATH)
    assert spec.version.startswith("2.")
    assert [s.name for s in spec.streams] == ["QIKI_RADAR_V1", "QIKI_EVENTS_V1", "QIKI_DLQ_V1"]
    config = load_runtime_config(DEFAULT_BOTSPEC_PATH)
    assert config.channels["SensorFrame"] == [
        "qiki.radar.v1.frames", "qiki.radar.v1.frames.lr", "qiki.radar.v1.frames.sr"]
    assert config.coverage_problems() == []


def test_version_1_loads_with_the_qiki_layout(spec_text: str) -> None:
    v1 = generate(parse_botspec(spec_text))
    v2 = load_runtime_config(DEFAULT_BOTSPEC_PATH)
    assert v1.spec_version == "1.0"
    assert v1.streams == v2.streams
    assert [c.durable for c in v1.consumers] == [c.durable for c in v2.consumers]
    assert v1.channels == v2.channels
    assert v1.subjects == v2.subjects
    assert v1.codes == v2.codes
    assert v1.dead_letter == v2.dead_letter


def test_version_1_extra_channel_lands_in_the_events_stream(spec_text: str) -> None:
    text = spec_text.replace("    - name: NavState\n",
                             "    - name: DockingState\n    - name: NavState\n")
    config = generate(parse_botspec(text))
    assert config.channels["DockingState"] == ["qiki.events.v1.docking_state"]
    assert config.coverage_problems() == []


# --------------------------------------------------------------------------- every rule


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


Case = tuple[str, Callable[[str], str], str, str, str]

_DUP_CONSUMER = """\
  - durable: climate-reader
    stream: ACME_CLIMATE
"""

CASES: list[Case] = [
    # (id, mutation, key path, line needle (in the mutated text), message fragment)
    ("channel subject captured by no stream",
     lambda t: t.replace("subjects: [acme.climate.v1.alarms]", "subjects: [acme.alarms]"),
     "channels[1].subjects[0]", "subjects: [acme.alarms]", "captured by no stream"),
    ("the frames.lr bug class: stream bound one token short",
     lambda t: t.replace('"acme.climate.v1.>"]', '"acme.climate.*"]')
     .replace('["acme.climate.v1.readings"]', '["acme.climate.x"]'),
     "channels[0].subjects[0]", "subjects: [acme.climate.v1.readings]", "captured by no stream"),
    ("channel subject captured by two streams",
     lambda t: t.replace('subjects: ["acme.dlq.>"]', 'subjects: ["acme.dlq.>"]\n'
                         '  - name: ALARMS\n    subjects: ["acme.*.v1.alarms"]'),
     "channels[1].subjects[0]", "subjects: [acme.climate.v1.alarms]", "captured by several"),
    ("overlapping stream subjects",
     lambda t: t.replace('subjects: ["acme.dlq.>"]', 'subjects: ["acme.>"]'),
     "streams[1].subjects[0]", 'subjects: ["acme.>"]', "overlaps"),
    ("consumer filter matching no channel",
     lambda t: t.replace('filter_subjects: ["acme.climate.v1.readings"]',
                         'filter_subjects: ["acme.climate.v1.nothing"]'),
     "consumers[0].filter_subjects[0]", "acme.climate.v1.nothing", "matches no channel"),
    ("consumer filter outside its stream",
     lambda t: t.replace('filter_subjects: ["acme.climate.v1.readings"]',
                         'filter_subjects: ["acme.dlq.x"]'),
     "consumers[0].filter_subjects[0]", "acme.dlq.x", "selects nothing in stream"),
    ("consumer on an unknown stream",
     lambda t: t.replace("stream: ACME_CLIMATE", "stream: ACME_CLIMAT"),
     "consumers[0].stream", "stream: ACME_CLIMAT", "did you mean 'ACME_CLIMATE'"),
    ("dead letter inside a consumed stream (a loop)",
     lambda t: t.replace("{subject: acme.dlq.registrar}", "{subject: acme.climate.v1.dead}")
     .replace('filter_subjects: ["acme.climate.v1.readings"]', "filter_subjects: []"),
     "dead_letter.subject", "dead_letter:", "loop"),
    ("code above 999",
     lambda t: t.replace("code: 702", "code: 1702"),
     "codes.rules[1].code", "code: 1702", "outside 100..999"),
    ("code below 100",
     lambda t: t.replace("{code: 900, name: UNKNOWN}", "{code: 42, name: UNKNOWN}"),
     "codes.default.code", "code: 42", "outside 100..999"),
    ("duplicate stream",
     lambda t: t.replace("name: ACME_DLQ", "name: ACME_CLIMATE"),
     "streams[1].name", "", "duplicate stream"),
    ("duplicate consumer",
     lambda t: t.replace("channels:\n", _DUP_CONSUMER + "channels:\n"),
     "consumers[1].durable", "", "duplicate consumer"),
    ("duplicate channel",
     lambda t: t.replace("  - name: Alarm\n", "  - name: Reading\n"),
     "channels[1].name", "", "duplicate channel"),
    ("duplicate type",
     lambda t: t.replace("- type: acme.climate.v1.Alarm", "- type: acme.climate.v1.Reading"),
     "channels[1].types[0].type", "", "duplicate type"),
    ("contract file that does not exist",
     lambda t: t.replace("schemas/reading.schema.json", "schemas/missing.schema.json"),
     "channels[0].types[0].contract", "schemas/missing.schema.json", "does not exist"),
    ("contract in an unknown form",
     lambda t: t.replace('{pydantic: "services.radar_sim.models:RadarFrame"}',
                         "{protobuf: x.proto}"),
     "channels[1].types[0].contract", "protobuf", "unknown form"),
]

@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_rule_catches_its_bad_spec(case: Case, acme_dir: Path) -> None:
    _, mutate, path, needle, fragment = case
    text = mutate(ACME)
    assert text != ACME
    parse_botspec(ACME, source="acme.yaml", base_dir=acme_dir)  # the good one is fine
    problems = _problems(text, acme_dir)
    hits = [p for p in problems if p[0] == path and fragment in p[2]]
    assert hits, problems
    _, got_line, _ = hits[0]
    assert got_line is not None
    if needle:
        assert got_line == _line(text, needle), (got_line, problems)


def test_every_problem_is_reported_at_once(acme_dir: Path) -> None:
    text = (ACME.replace("code: 702", "code: 1702")
            .replace("schemas/reading.schema.json", "schemas/missing.schema.json")
            .replace("subjects: [acme.climate.v1.alarms]", "subjects: [acme.alarms]"))
    problems = _problems(text, acme_dir)
    assert {p[0] for p in problems} == {
        "codes.rules[1].code", "channels[0].types[0].contract", "channels[1].subjects[0]"}
    lines = [p[1] for p in problems]
    assert lines == sorted(lines)  # in file order


def test_a_partly_captured_wildcard_channel_is_reported(acme_dir: Path) -> None:
    text = ACME.replace('subjects: ["acme.climate.v1.>"]', 'subjects: ["acme.climate.v1.*"]')
    text = text.replace("subjects: [acme.climate.v1.alarms]", 'subjects: ["acme.climate.v1.>"]')
    path, _, msg = _one(text, acme_dir)
    assert path == "channels[1].subjects[0]" and "only partly captured" in msg


def test_a_rule_needs_a_condition_and_one_result(acme_dir: Path) -> None:
    text = ACME.replace("    - {type: acme.climate.v1.Reading, code: 201, name: READING}",
                        "    - {code: 201, outcomes: {ok: 201}}")
    msgs = [m for _, _, m in _problems(text, acme_dir)]
    assert any("exactly one of code" in m for m in msgs)
    assert any("at least one condition" in m for m in msgs)
    assert any("unknown outcome class 'ok'" in m for m in msgs)


def test_unknown_key_names_the_allowed_ones(acme_dir: Path) -> None:
    text = ACME.replace("    max_deliver: 3\n", "    max_delivers: 3\n")
    path, line, msg = _one(text, acme_dir)
    assert (path, line) == ("consumers[0].max_delivers", _line(text, "max_delivers"))
    assert "did you mean 'max_deliver'" in msg


def test_runtime_channel_roles_must_exist_when_written(acme_dir: Path) -> None:
    text = ACME + "runtime:\n  lagmon: {health: Health}\n"
    path, _, msg = _one(text, acme_dir)
    assert path == "runtime.lagmon.health" and "unknown channel 'Health'" in msg


def test_load_botspec_resolves_contracts_next_to_the_file(acme_dir: Path) -> None:
    spec_file = acme_dir / "acme.yaml"
    spec_file.write_text(ACME)
    spec = load_botspec(spec_file)
    assert Path(spec.contracts["acme.climate.v1.Reading"].target).is_file()
