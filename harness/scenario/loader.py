"""Load scenario files: YAML -> typed Scenario, with errors that name file, key path and line."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.errors import ConfigError
from harness.scenario.model import (
    LoadStep,
    PublishStep,
    Scenario,
    reference_problems,
    step_body,
)


class ScenarioError(ConfigError):
    """A scenario file is unreadable or invalid. ``problems`` lists each one on its own."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{path}: invalid scenario ({len(self.problems)} problem(s)):\n{lines}")


def _key_path(loc: Sequence[int | str]) -> list[int | str]:
    """Pydantic puts a tagged union's tag in ``loc`` (``checks.0.lag.lag.max``); our tags are
    the YAML keys themselves, so drop the repeat to get the file's path back."""
    out: list[int | str] = []
    for i, part in enumerate(loc):
        if i >= 2 and isinstance(loc[i - 2], int) and part == loc[i - 1] and isinstance(part, str):
            continue
        out.append(part)
    return out


def format_path(path: Sequence[int | str]) -> str:
    """``['checks', 0, 'lag', 'max']`` -> ``checks[0].lag.max``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _line_of(root: yaml.Node | None, path: Sequence[int | str]) -> int | None:
    """1-based line of the deepest node along ``path`` in the composed YAML tree."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in path:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    # a missing or extra key is best shown at the key itself
                    line = k.start_mark.line + 1
                    nxt = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                nxt = node.value[part]
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None, path: list[int | str], out: list[str]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if k.value in seen:
                where = format_path([*path, k.value])
                out.append(f"{where} (line {k.start_mark.line + 1}): duplicate key")
            seen.add(k.value)
            _duplicate_keys(v, [*path, k.value], out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _duplicate_keys(v, [*path, i], out)


def _describe(err: dict[str, Any]) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see the scenario reference in the README)"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "value_error":
        # our validators' messages already name the value and what is expected
        return msg.removeprefix("Value error, ")
    if "input" in err and err["type"] not in {"step_kind", "check_kind"}:
        return f"{msg} (got {err['input']!r})"
    return msg


def read_data_file(path: Path) -> object:
    """The data a publish step's ``data_file`` holds: JSON (``.json``) or YAML (anything
    else). Raises ``ValueError`` saying what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read data_file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"data_file {str(path)!r} is not UTF-8 text: {exc}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"data_file {str(path)!r} is not valid "
                         f"{'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None


def data_file_problems(scenario: Scenario, base: Path) -> list[tuple[list[int | str], str]]:
    """Every publish and load step's ``data_file`` exists and parses (relative to ``base``, the
    scenario file's directory), checked before anything starts."""
    out: list[tuple[list[int | str], str]] = []
    for i, entry in enumerate(scenario.method):
        step = step_body(entry)
        if isinstance(step, PublishStep | LoadStep) and step.data_file is not None:
            try:
                read_data_file(base / step.data_file)
            except ValueError as exc:
                kind = "publish" if isinstance(step, PublishStep) else "load"
                out.append((["method", i, kind, "data_file"], str(exc)))
    return out


def spec_path(scenario: Scenario, base: Path) -> Path | None:
    """The BotSpec ``topology.spec`` names, resolved against ``base`` (the scenario's
    directory); None when the scenario uses the default spec."""
    if scenario.topology.spec is None:
        return None
    return (base / scenario.topology.spec).resolve()


def _load_spec(path: Path) -> Any:
    """``load_botspec(path)``, reused while the file is unchanged: collecting the shipped
    scenarios loaded the same default spec once per file (~0.1 s each, a tenth of
    ``pytest -m smoke``'s collection)."""
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None:
        from services.common.botspec import load_botspec

        return load_botspec(path)  # raises the spec loader's own error for a missing file
    return _load_spec_version(path.resolve(), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _load_spec_version(path: Path, mtime_ns: int, size: int) -> Any:
    from services.common.botspec import load_botspec

    return load_botspec(path)


def spec_problems(scenario: Scenario, base: Path) -> list[tuple[list[int | str], str]]:
    """The spec ``topology.spec`` names loads and validates: each of its problems (with the
    spec's own file, key path and line) becomes a problem of ``topology.spec``. Consumers the
    scenario names (lag checks, the lag monitor's thresholds) must be the spec's."""
    from services.common.botspec import BotSpecError, default_botspec_path

    path = spec_path(scenario, base)
    try:
        spec = _load_spec(path or default_botspec_path())
    except BotSpecError as exc:
        if path is None:  # the default spec is not this scenario's problem
            return []
        return [(["topology", "spec"], f"invalid BotSpec: {p}") for p in exc.problems]
    durables = [c.durable for c in spec.consumers]
    streams = [s.name for s in spec.streams]
    known = f"the spec's consumers: {', '.join(durables) or 'none'}"
    out: list[tuple[list[int | str], str]] = []
    lagmon = scenario.topology.services.get("lagmon")
    for durable in lagmon.thresholds if lagmon is not None else {}:
        if durable not in durables:
            out.append((["topology", "services", "lagmon", "thresholds", durable],
                        f"unknown consumer {durable!r}; {known}"))
    lists: list[tuple[list[int | str], list[Any]]] = [
        (["checks"], list(scenario.checks)),
        (["steady_state", "checks"], list(scenario.steady_state.checks)),
    ]
    for prefix, entries in lists:
        for i, entry in enumerate(entries):
            for key in ("lag", "lag_recovery"):
                check = getattr(entry, key, None)
                if check is None:
                    continue
                if check.consumer is not None and check.consumer not in durables:
                    out.append(([*prefix, i, key, "consumer"],
                                f"unknown consumer {check.consumer!r}; {known}"))
                if check.stream is not None and check.stream not in streams:
                    out.append(([*prefix, i, key, "stream"],
                                f"unknown stream {check.stream!r}; the spec's streams: "
                                f"{', '.join(streams) or 'none'}"))
    return out


def parse_scenario(text: str, path: Path | str = "<string>") -> Scenario:
    """Parse scenario YAML text; every problem is reported at once."""
    p = Path(path)
    try:
        # One parse: the node tree (its lines name problems) and the data built from it,
        # as yaml.safe_load does (parsing twice was a third of collecting the scenarios).
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(p, [f"{where}not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    problems: list[str] = []
    _duplicate_keys(root, [], problems)
    if not isinstance(data, dict):
        problems.append(f"expected a mapping with at least 'name', got {type(data).__name__}")
        raise ScenarioError(p, problems)
    try:
        scenario = Scenario.model_validate(data, context={"defer_references": True})
    except ValidationError as exc:
        for err in exc.errors():
            kp = _key_path(err["loc"])
            line = _line_of(root, kp)
            at = f" (line {line})" if line else ""
            problems.append(f"{format_path(kp)}{at}: {_describe(dict(err))}")
        raise ScenarioError(p, problems) from None
    # Cross-references (step names, events.after) and files the steps name, each at its
    # own key path and line.
    base = p.parent if p.name != "<string>" else Path.cwd()
    for kp, msg in [*reference_problems(scenario), *data_file_problems(scenario, base),
                    *spec_problems(scenario, base)]:
        line = _line_of(root, kp)
        at = f" (line {line})" if line else ""
        problems.append(f"{format_path(kp)}{at}: {msg}")
    if problems:
        raise ScenarioError(p, problems)
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate one scenario file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(p, [f"cannot read file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(p, [f"not UTF-8 text: {exc}"]) from exc
    return parse_scenario(text, p)
