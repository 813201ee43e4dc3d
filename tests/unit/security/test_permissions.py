"""Least-privilege permissions derived from the spec (harness.security.permissions)."""

from __future__ import annotations

import pytest

from harness.security import ALLOW_ALL, Identity
from harness.security.permissions import (
    INBOX,
    UndeclaredServiceError,
    identities_for_run,
    inbox_prefix,
    inbox_subjects,
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
    assert by["load"].permissions.subscribe == ("_INBOX.load.>",)
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
    assert perms.subscribe == ("_INBOX.radar_sim.>",)


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
    assert perms.subscribe == ("_INBOX.registrar.>",)


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


def test_each_identity_subscribes_only_to_its_own_inbox(qiki: RuntimeConfig) -> None:
    """The shared ``_INBOX.>`` would let any identity read the PubAcks and pull deliveries of
    every other one (issue 10): each gets ``_INBOX.<identity>.>`` and nothing of the others."""
    ids = identities_for_run(qiki, ["registrar", "lagmon", "radar_sim"])
    restricted = [i for i in ids if not i.permissions.unrestricted]
    assert {i.name for i in restricted} == {"registrar", "lagmon", "radar_sim", "load"}
    for ident in restricted:
        sub = ident.permissions.subscribe or ()
        assert INBOX not in sub and "_INBOX.*" not in sub and ">" not in sub
        assert inbox_subjects(ident.name) in sub
        own = f"{inbox_prefix(ident.name)}.AbC123.7"
        assert _allowed(sub, own)
        for other in restricted:
            if other.name != ident.name:
                theirs = f"{inbox_prefix(other.name)}.AbC123.7"
                assert not _allowed(sub, theirs), (ident.name, other.name)
        assert not _allowed(sub, "_INBOX.AbC123.7")  # nats-py's default prefix


def test_inbox_prefix_is_one_token_per_identity() -> None:
    assert inbox_prefix("radar_sim") == "_INBOX.radar_sim"
    assert inbox_subjects("load") == "_INBOX.load.>"
    for bad in ("", "a.b", "x*", "y>", "with space"):
        with pytest.raises(ValueError, match="cannot name an inbox"):
            inbox_prefix(bad)
