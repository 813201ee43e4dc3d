"""Runtime-config generation: layout, subject coverage, overrides, dump."""

from __future__ import annotations

import json

import pytest
import yaml

from services.common.botspec import (
    REQUIRED_CHANNELS,
    RuntimeConfig,
    StreamConfig,
    dump_runtime_config,
    generate,
    load_runtime_config,
    parse_botspec,
)


@pytest.fixture(scope="module")
def config() -> RuntimeConfig:
    return load_runtime_config()


def test_streams(config: RuntimeConfig) -> None:
    assert [(s.name, s.subjects) for s in config.streams] == [
        ("QIKI_RADAR_V1", ["qiki.radar.v1.>"]),
        ("QIKI_EVENTS_V1", ["qiki.events.v1.>"]),
        ("QIKI_DLQ_V1", ["qiki.dlq.v1.>"]),
    ]
    for s in config.streams:
        assert s.storage == "file"
        assert s.duplicate_window_s == 120
        assert s.replicas == 1


def test_consumers(config: RuntimeConfig) -> None:
    assert [(c.stream, c.durable) for c in config.consumers] == [
        ("QIKI_EVENTS_V1", "registrar-events"),
        ("QIKI_RADAR_V1", "registrar-radar"),
    ]
    for c in config.consumers:
        assert c.ack_policy == "explicit"
        assert c.filter_subject is None  # the whole stream: see test below
        assert c.max_deliver > 0  # never redeliver forever


def test_subjects(config: RuntimeConfig) -> None:
    s = config.subjects
    assert s.radar_frames == "qiki.radar.v1.frames"
    assert s.radar_frames_lr == "qiki.radar.v1.frames.lr"
    assert s.radar_frames_sr == "qiki.radar.v1.frames.sr"
    assert s.radar_tracks == "qiki.radar.v1.tracks"
    assert s.sensor_events == "qiki.events.v1.sensor"
    assert s.power_events == "qiki.events.v1.power"
    assert s.health_events == "qiki.events.v1.health"
    assert s.registrar_events == "qiki.events.v1.registrar"
    assert s.dead_letter == "qiki.dlq.v1.registrar"


def test_channel_mapping(config: RuntimeConfig) -> None:
    assert set(config.channels) == {*REQUIRED_CHANNELS, "SensorStatus", "HealthEvent",
                                    "SecurityEvent"}
    assert config.channels["SensorFrame"] == [
        "qiki.radar.v1.frames", "qiki.radar.v1.frames.lr", "qiki.radar.v1.frames.sr"]
    assert config.channels["TrackSet"] == ["qiki.radar.v1.tracks"]
    assert config.channels["EnergyStatus"] == ["qiki.events.v1.power"]
    assert config.channels["RegistrarEvent"] == ["qiki.events.v1.registrar"]
    assert config.components["sensors"].publishes == [
        "qiki.radar.v1.frames", "qiki.radar.v1.frames.lr", "qiki.radar.v1.frames.sr",
        "qiki.radar.v1.tracks"]


def test_services(config: RuntimeConfig) -> None:
    assert config.registrar.durables == ["registrar-events", "registrar-radar"]
    assert config.subjects.dead_letter in config.registrar.publishes
    assert config.registrar.batch_size == 1000
    assert [(w.stream, w.durable, w.lag_threshold) for w in config.lagmon.watch] == [
        ("QIKI_EVENTS_V1", "registrar-events", 1000),
        ("QIKI_RADAR_V1", "registrar-radar", 5000),
    ]
    assert config.lagmon.publishes == ["qiki.events.v1.health"]
    assert config.radar_sim.rate_hz == 10
    assert config.radar_sim.source == "urn:qiki:q-sim-service:radar"
    assert config.subjects.radar_frames_lr in config.radar_sim.publishes


def test_every_published_subject_is_captured_by_exactly_one_stream(
        config: RuntimeConfig) -> None:
    subjects = config.all_publish_subjects()
    assert "qiki.radar.v1.frames.lr" in subjects
    assert "qiki.radar.v1.frames.sr" in subjects
    for subject in subjects:
        assert len(config.streams_for(subject)) == 1, subject
    assert config.coverage_problems() == []


def test_dead_letters_cannot_loop(config: RuntimeConfig) -> None:
    # The registrar consumes QIKI_EVENTS_V1; a dead letter stored there would be re-consumed.
    dlq = config.stream_for(config.subjects.dead_letter)
    assert dlq is not None and dlq.name == "QIKI_DLQ_V1"
    consumed = {c.stream for c in config.consumers}
    assert dlq.name not in consumed


def test_coverage_check_catches_the_original_qiki_bug(config: RuntimeConfig) -> None:
    # The original platform bound its radar stream to qiki.radar.v1.* : one token only.
    buggy_radar = config.stream("QIKI_RADAR_V1").model_copy(
        update={"subjects": ["qiki.radar.v1.*"]})
    buggy = config.model_copy(update={"streams": [
        buggy_radar if s.name == "QIKI_RADAR_V1" else s for s in config.streams]})
    assert buggy.stream_for("qiki.radar.v1.frames") is not None
    assert buggy.stream_for("qiki.radar.v1.frames.lr") is None
    problems = buggy.coverage_problems()
    lost = sorted(p.split("'")[1] for p in problems)
    assert lost == ["qiki.radar.v1.frames.lr", "qiki.radar.v1.frames.sr"]
    assert "captured by no stream" in problems[0]


def test_coverage_check_catches_overlapping_streams(config: RuntimeConfig) -> None:
    extra = StreamConfig(name="ALL_QIKI", subjects=["qiki.>"])
    broken = config.model_copy(update={"streams": [*config.streams, extra]})
    problems = broken.coverage_problems()
    assert problems and all("several streams" in p for p in problems)
    assert len(problems) == len(config.all_publish_subjects())


def test_coverage_check_catches_dead_consumer_filter(config: RuntimeConfig) -> None:
    bad = config.consumer("registrar-radar").model_copy(
        update={"filter_subjects": ["qiki.events.v1.>"]})
    broken = config.model_copy(update={"consumers": [config.consumers[0], bad]})
    assert broken.coverage_problems() == [
        "consumer 'registrar-radar' filter 'qiki.events.v1.>' selects nothing in stream "
        "'QIKI_RADAR_V1'"]


def test_with_overrides_returns_a_copy(config: RuntimeConfig) -> None:
    mem = config.with_overrides(storage="memory", replicas=3)
    assert {(s.storage, s.replicas) for s in mem.streams} == {("memory", 3)}
    assert {(s.storage, s.replicas) for s in config.streams} == {("file", 1)}
    assert mem.subjects == config.subjects
    assert config.with_overrides() == config
    with pytest.raises(ValueError, match="replicas must be between 1 and 5"):
        config.with_overrides(replicas=0)
    with pytest.raises(ValueError, match="storage must be"):
        config.with_overrides(storage="disk")  # type: ignore[arg-type]


def test_lookups_name_what_exists(config: RuntimeConfig) -> None:
    with pytest.raises(KeyError, match="QIKI_RADAR_V1"):
        config.stream("NOPE")
    with pytest.raises(KeyError, match="registrar-events"):
        config.consumer("nope")


def test_dump_round_trips(config: RuntimeConfig) -> None:
    as_yaml = yaml.safe_load(dump_runtime_config(config, "yaml"))
    as_json = json.loads(dump_runtime_config(config, "json"))
    assert as_yaml == as_json == config.to_dict()
    assert RuntimeConfig.model_validate(as_json) == config
    with pytest.raises(ValueError, match="fmt must be"):
        dump_runtime_config(config, "toml")  # type: ignore[arg-type]


def test_extra_channel_lands_in_events_stream(spec_text: str) -> None:
    text = spec_text.replace("    - name: NavState\n",
                             "    - name: DockingStatus\n    - name: NavState\n")
    text = text.replace("    provides: [RegistrarEvent]\n    consumes: [NavState, ProtocolCmd]",
                        "    provides: [RegistrarEvent, DockingStatus]\n"
                        "    consumes: [NavState, ProtocolCmd]")
    config = generate(parse_botspec(text))
    assert config.channels["DockingStatus"] == ["qiki.events.v1.docking_status"]
    assert "qiki.events.v1.docking_status" in config.components["docking"].publishes
    assert config.stream_for("qiki.events.v1.docking_status") is not None
    assert config.coverage_problems() == []


def test_runtime_section_defaults(spec_text: str) -> None:
    text = spec_text[: spec_text.index("# Per-service settings")]
    config = generate(parse_botspec(text))
    assert config.radar_sim.rate_hz == 10.0
    assert {w.lag_threshold for w in config.lagmon.watch} == {1000}
