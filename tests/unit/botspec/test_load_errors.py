"""BotSpec loading: the shipped spec loads; every kind of mistake names file, key path, line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.botspec import (
    DEFAULT_BOTSPEC_PATH,
    REQUIRED_CHANNELS,
    REQUIRED_COMPONENTS,
    BotSpecError,
    default_botspec_path,
    load_botspec,
    parse_botspec,
)

LineOf = Callable[..., int]


def _error(text: str, source: str = "spec.yaml") -> BotSpecError:
    with pytest.raises(BotSpecError) as info:
        parse_botspec(text, source=source)
    return info.value


def _only(err: BotSpecError) -> tuple[str, str, int | None]:
    assert len(err.problems) == 1, str(err)
    p = err.problems[0]
    return p.file, p.path, p.line


def test_shipped_spec_loads() -> None:
    spec = load_botspec(DEFAULT_BOTSPEC_PATH)
    assert spec.kind == "BotSpec"
    assert spec.metadata.id == "QIKI-DODECA-01"
    assert set(REQUIRED_COMPONENTS) <= set(spec.components)
    assert set(REQUIRED_CHANNELS) <= set(spec.channel_names())


def test_default_path_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QIKI_BOTSPEC", raising=False)
    assert default_botspec_path() == DEFAULT_BOTSPEC_PATH
    monkeypatch.setenv("QIKI_BOTSPEC", str(tmp_path / "x.yaml"))
    assert default_botspec_path() == tmp_path / "x.yaml"


def test_unknown_top_level_key(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("kind: BotSpec\n", "kind: BotSpec\nkinds: oops\n")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "kinds", line_of(text, "kinds: oops"))
    assert "unknown key 'kinds'" in str(err)
    assert "did you mean 'kind'" in str(err)


def test_unknown_key_in_metadata(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("  id: QIKI-DODECA-01\n", "  id: QIKI-DODECA-01\n  owner: me\n")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "metadata.owner", line_of(text, "owner: me"))
    assert "allowed keys here: id, name, description" in str(err)


def test_unknown_key_in_component(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("    type: power_bus\n", "    type: power_bus\n    voltage: 28\n")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "components.power.voltage", line_of(text, "voltage: 28"))


def test_unknown_key_in_channel_list_item(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("    - name: NavState\n",
                             "    - name: NavState\n      subject: qiki.nav\n")
    err = _error(text)
    # NavState is the 8th channel (index 7).
    assert _only(err) == ("spec.yaml", "event_bus.channels[7].subject",
                          line_of(text, "subject: qiki.nav"))


def test_unknown_key_in_runtime_section(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("    rate_hz: 10\n", "    rate_hz: 10\n    burst: 3\n")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "runtime.radar_sim.burst", line_of(text, "burst: 3"))


def test_wrong_type_names_value(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("rate_hz: 10", "rate_hz: fast")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "runtime.radar_sim.rate_hz", line_of(text, "rate_hz: fast"))
    assert "'fast'" in str(err)


def test_provides_must_be_a_list(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("    provides: [EnergyStatus]\n", "    provides: 7\n")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "components.power.provides", line_of(text, "provides: 7"))
    assert "int 7" in str(err)


def test_unquoted_version_gets_a_hint(spec_text: str) -> None:
    err = _error(spec_text.replace('version: "1.0"', "version: 1.0"))
    assert _only(err) == ("spec.yaml", "version", 9)
    assert 'quoted string such as "1.0"' in str(err)


def test_wrong_kind(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("kind: BotSpec", "kind: Robot")
    assert _only(_error(text)) == ("spec.yaml", "kind", line_of(text, "kind: Robot"))


def test_unsupported_major_version(spec_text: str) -> None:
    err = _error(spec_text.replace('version: "1.0"', 'version: "3.0"'))
    assert _only(err) == ("spec.yaml", "version", 9)
    assert "unsupported version '3.0'" in str(err)


def test_missing_required_key(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("  id: QIKI-DODECA-01\n", "")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "metadata.id", line_of(text, "metadata:"))
    assert "required key 'id' is missing" in str(err)


def test_missing_component_suggests_misspelling(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("  docking:\n", "  dockin:\n")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "components", line_of(text, "components:"))
    assert "missing required components: docking" in str(err)
    assert "'dockin'" in str(err)


def test_missing_several_components_lists_them_all(spec_text: str) -> None:
    text = spec_text.replace("  hull:\n    type: dodecahedron_hull\n"
                             "    provides: [ShieldStatus]\n    consumes: [EnergyStatus]\n", "")
    text = text.replace("  comms:\n    type: comms_link\n    provides: [ProtocolCmd]\n"
                        "    consumes: [RegistrarEvent, TrackSet]\n", "")
    assert "missing required components: hull, comms" in str(_error(text))


def test_missing_channel(spec_text: str, line_of: LineOf) -> None:
    # Drop ShieldStatus and every reference to it so only the missing channel is reported.
    text = spec_text.replace("    - name: ShieldStatus\n      description: Shield strength "
                             "and faults.\n", "")
    text = text.replace("provides: [ShieldStatus]", "provides: []")
    text = text.replace("EnergyStatus, TrackSet, ShieldStatus", "EnergyStatus, TrackSet")
    text = text.replace("[NavState, ShieldStatus, EnergyStatus, TrackSet]",
                        "[NavState, EnergyStatus, TrackSet]")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "event_bus.channels", line_of(text, "  channels:"))
    assert "missing required channels: ShieldStatus" in str(err)


def test_unknown_channel_reference_suggests_closest(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("consumes: [ThrusterCmd, EnergyStatus]",
                             "consumes: [ThrusterCmd, EnergyStatsu]")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "components.propulsion.consumes[1]",
                          line_of(text, "EnergyStatsu"))
    assert "unknown channel 'EnergyStatsu'; did you mean 'EnergyStatus'?" in str(err)


def test_unknown_channel_in_block_list_has_the_item_line(spec_text: str) -> None:
    text = spec_text.replace(
        "    type: protocol_engine\n    provides: [ModeCmd, ProtocolCmd]\n",
        "    type: protocol_engine\n    provides:\n      - ModeCmd\n      - ProtocolCmd\n"
        "      - Protocolcmd\n",
    )
    err = _error(text)
    lines = text.splitlines()
    line = lines.index("      - Protocolcmd") + 1
    assert _only(err) == ("spec.yaml", "components.protocols.provides[2]", line)
    assert "did you mean 'ProtocolCmd'" in str(err)


def test_duplicate_key(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("  power:\n", "  hull:\n    type: again\n  power:\n")
    err = _error(text)
    first = line_of(text, "  hull:")
    second = line_of(text, "  hull:", nth=2)
    assert _only(err) == ("spec.yaml", "components.hull", second)
    assert f"first defined on line {first}" in str(err)


def test_duplicate_channel_name(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("    - name: NavState\n",
                             "    - name: NavState\n    - name: TrackSet\n")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "event_bus.channels[8].name",
                          line_of(text, "- name: TrackSet", nth=2))
    assert "also event_bus.channels[1]" in str(err)


def test_broken_yaml_syntax(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("kind: BotSpec", "kind: [BotSpec")
    err = _error(text)
    file, path, line = _only(err)
    assert (file, path) == ("spec.yaml", "<document>")
    # The parser notices the unclosed flow sequence at the next key.
    assert line == line_of(text, "metadata:")
    assert "YAML syntax error" in str(err)


def test_bad_indentation(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("    type: power_bus\n", "    type: power_bus\n   oops: 1\n")
    err = _error(text)
    assert err.line == line_of(text, "oops: 1")
    assert "YAML syntax error" in str(err)


def test_lag_threshold_for_unknown_consumer(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("registrar-radar: 5000", "registrar-rader: 5000")
    err = _error(text)
    assert _only(err) == ("spec.yaml", "runtime.lagmon.lag_thresholds.registrar-rader",
                          line_of(text, "registrar-rader"))
    assert "did you mean 'registrar-radar'" in str(err)


def test_several_problems_all_reported_in_line_order(spec_text: str, line_of: LineOf) -> None:
    text = spec_text.replace("kind: BotSpec\n", "kind: BotSpec\nkinds: oops\n")
    text = text.replace("rate_hz: 10", "rate_hz: -1")
    err = _error(text)
    assert [(p.path, p.line) for p in err.problems] == [
        ("kinds", line_of(text, "kinds: oops")),
        ("runtime.radar_sim.rate_hz", line_of(text, "rate_hz: -1")),
    ]
    assert "2 problems" in str(err)


def test_recursive_alias_is_an_error() -> None:
    err = _error("a: &x [*x]\n")
    assert "recursive alias" in str(err)


def test_alias_bomb_is_an_error() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    err = _error("\n".join(lines) + "\n")
    assert "alias bomb" in str(err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("just text\n", "expected a mapping"),
        ("? [a, b]\n: 1\n", "keys must be plain scalars"),
        ("a: !!python/object:os.system x\n", "YAML"),
        ("a: 1\n---\nb: 2\n", "YAML"),
    ],
)
def test_odd_documents(text: str, expected: str) -> None:
    assert expected in str(_error(text))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(BotSpecError, match="cannot read the file"):
        load_botspec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"version: '1.0'\nkind: \xff\n")
    with pytest.raises(BotSpecError) as info:
        load_botspec(bad)
    assert (info.value.file, info.value.line) == (str(bad), 2)
    assert "not UTF-8" in str(info.value)


def test_error_message_names_the_real_file(tmp_path: Path, spec_text: str) -> None:
    path = tmp_path / "MyBot.yaml"
    path.write_text(spec_text.replace("kind: BotSpec\n", "kind: BotSpec\nextra: 1\n"))
    with pytest.raises(BotSpecError) as info:
        load_botspec(path)
    assert str(info.value) == (
        f"invalid BotSpec: {path}:11: extra: unknown key 'extra'; allowed keys here: "
        "version, kind, metadata, components, event_bus, runtime"
    )
    assert isinstance(info.value, ValueError)


def test_unprintable_character_names_its_line() -> None:
    err = _error("version: '1.0'\nkind: Bot\x1fSpec\n")
    assert (err.path, err.line) == ("<document>", 2)
    assert "#x001f" in str(err)
