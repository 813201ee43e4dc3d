"""Least-privilege permissions derived from the spec (harness.security.permissions)."""

from __future__ import annotations

import pytest

from harness.security import ALLOW_ALL, Identity
from harness.security.permissions import (
    INBOX,
    UndeclaredServiceError,
    identities_for_run,
    service_permissions,
)
from services.common.botspec import (
    BotSpecError,
    RuntimeConfig,
    load_runtime_config,
    parse_botspec,
    subject_matches,
)


def _allowed(patterns: tuple[str, ...] | None, subject: str) -> bool:
    return patterns is None or any(subject_matches(p, subject) for p in patterns)


@pytest.fixture(scope="module")
def qiki() -> RuntimeConfig:
    return load_runtime_config()


def test_identities_cover_every_service_then_harness_and_load(qiki: RuntimeConfig) -> None:
    ids = identities_for_run(qiki, ["registrar", "lagmon", "radar_sim"])
    assert [i.name for i in ids] == ["registrar", "lagmon", "radar_sim", "harness", "load"]
    by = {i.name: i for i in ids}
    assert by["harness"] == Identity("harness", ALLOW_ALL)
    assert by["load"].permissions.publish == (
        "qiki.dlq.v1.>", "qiki.events.v1.>", "qiki.radar.v1.>")
    assert by["load"].permissions.subscribe == (INBOX,)
    for name in ("registrar", "lagmon", "radar_sim"):
        assert not by[name].permissions.unrestricted


def test_radar_sim_publishes_only_its_roles(qiki: RuntimeConfig) -> None:
    perms = service_permissions("radar_sim", qiki)
    for subject in ("qiki.radar.v1.frames", "qiki.radar.v1.frames.lr", "qiki.radar.v1.frames.sr",
                    "qiki.radar.v1.tracks", "qiki.events.v1.sensor", "qiki.events.v1.power"):
        assert _allowed(perms.publish, subject), subject
    for subject in ("qiki.events.v1.x", "qiki.events.v1.registrar", "qiki.dlq.v1.registrar",
                    "$JS.API.STREAM.DELETE.QIKI_RADAR_V1", "$JS.API.CONSUMER.INFO.X.Y"):
        assert not _allowed(perms.publish, subject), subject
    assert perms.subscribe == (INBOX,)


def test_registrar_pulls_acks_and_dead_letters(qiki: RuntimeConfig) -> None:
    perms = service_permissions("registrar", qiki)
    pub = perms.publish
    for subject in ("qiki.events.v1.registrar", "qiki.dlq.v1.registrar",
                    "$JS.API.CONSUMER.MSG.NEXT.QIKI_EVENTS_V1.registrar-events",
                    "$JS.API.CONSUMER.INFO.QIKI_RADAR_V1.registrar-radar",
                    "$JS.ACK.QIKI_EVENTS_V1.registrar-events.1.2.3.4.5",
                    "$JS.API.STREAM.CREATE.QIKI_DLQ_V1",
                    "$JS.API.CONSUMER.CREATE.QIKI_EVENTS_V1.registrar-events",
                    "$JS.API.CONSUMER.DURABLE.CREATE.QIKI_EVENTS_V1.registrar-events"):
        assert _allowed(pub, subject), subject
    for subject in ("qiki.radar.v1.frames", "qiki.events.v1.sensor",
                    "$JS.API.STREAM.DELETE.QIKI_EVENTS_V1", "$JS.API.STREAM.PURGE.QIKI_EVENTS_V1",
                    "$JS.API.CONSUMER.DELETE.QIKI_EVENTS_V1.registrar-events",
                    "$JS.ACK.QIKI_EVENTS_V1.other.1.2.3.4.5"):
        assert not _allowed(pub, subject), subject
    # Pull deliveries and API answers come to the inbox; no core subscription to the streams.
    assert perms.subscribe == (INBOX,)


def test_lagmon_lists_consumers_and_owns_only_its_read_back_consumer(qiki: RuntimeConfig) -> None:
    from services.lagmon.state import RESTORE_CONSUMER

    perms = service_permissions("lagmon", qiki)
    pub = perms.publish
    for subject in ("qiki.events.v1.health", "$JS.API.CONSUMER.LIST.QIKI_EVENTS_V1",
                    "$JS.API.CONSUMER.LIST.QIKI_RADAR_V1", "$JS.API.STREAM.MSG.GET.QIKI_RADAR_V1",
                    "$JS.API.STREAM.NAMES",
                    f"$JS.API.CONSUMER.CREATE.QIKI_EVENTS_V1.{RESTORE_CONSUMER}.qiki.events.v1.health",
                    f"$JS.API.CONSUMER.DELETE.QIKI_EVENTS_V1.{RESTORE_CONSUMER}",
                    f"$JS.API.CONSUMER.MSG.NEXT.QIKI_EVENTS_V1.{RESTORE_CONSUMER}"):
        assert _allowed(pub, subject), subject
    for subject in ("$JS.API.CONSUMER.DELETE.QIKI_EVENTS_V1.registrar-events",
                    "$JS.API.CONSUMER.MSG.NEXT.QIKI_EVENTS_V1.registrar-events",
                    "qiki.events.v1.registrar", "qiki.radar.v1.frames"):
        assert not _allowed(pub, subject), subject


_SPEC = """
version: "2.0"
kind: BotSpec
metadata: {id: GH}
streams:
  - {name: CMD, subjects: ["gh.cmd.>"]}
  - {name: OUT, subjects: [gh.readings, gh.alarms]}
consumers:
  - {durable: gh-commands, stream: CMD}
channels:
  - {name: Commands, subjects: [gh.cmd.set]}
  - {name: Readings, subjects: [gh.readings]}
  - {name: Alarms, subjects: [gh.alarms]}
components:
  greenhouse: {type: controller, provides: [Readings, Alarms], consumes: [Commands],
               durables: [gh-commands]}
"""


def test_user_service_from_its_component() -> None:
    from services.common.botspec import generate

    config = generate(parse_botspec(_SPEC))
    perms = service_permissions("greenhouse", config)
    assert _allowed(perms.publish, "gh.readings")
    assert _allowed(perms.publish, "$JS.API.CONSUMER.MSG.NEXT.CMD.gh-commands")
    assert _allowed(perms.publish, "$JS.ACK.CMD.gh-commands.1.1.1.1.0")
    assert not _allowed(perms.publish, "gh.cmd.set")
    assert perms.subscribe is not None and "gh.cmd.set" in perms.subscribe


def test_undeclared_user_service_is_an_error_naming_the_fix(qiki: RuntimeConfig) -> None:
    with pytest.raises(UndeclaredServiceError) as err:
        identities_for_run(qiki, ["registrar", "greenhouse"])
    assert "greenhouse" in str(err.value) and "components:" in str(err.value)


def test_reserved_names_are_refused(qiki: RuntimeConfig) -> None:
    with pytest.raises(ValueError, match="reserved"):
        identities_for_run(qiki, ["load"])


def test_load_subjects_can_be_given(qiki: RuntimeConfig) -> None:
    load = identities_for_run(qiki, [], load_subjects=["qiki.events.v1.sensor"])[-1]
    assert load.permissions.publish == ("qiki.events.v1.sensor",)


def test_component_durables_must_exist() -> None:
    bad = _SPEC.replace("durables: [gh-commands]", "durables: [gh-comands]")
    with pytest.raises(BotSpecError, match="unknown consumer 'gh-comands'"):
        parse_botspec(bad)


def test_the_spec_codes_security_events_8xx(qiki: RuntimeConfig) -> None:
    from harness.security.events import AUTH_FAILED, PERMISSION_DENIED
    from harness.security.relay import security_subject
    from services.registrar.codemap import CodeMapper

    subject = security_subject(qiki)
    assert subject == "qiki.events.v1.security"
    assert security_subject(qiki, PERMISSION_DENIED) == subject
    mapper = CodeMapper(qiki.codes)
    assert mapper.classify(AUTH_FAILED, subject).code == 820
    assert mapper.classify(PERMISSION_DENIED, subject).code == 830
    # the stream the registrar reads captures it
    assert qiki.stream_for(subject) is not None
