"""Mutated specs never crash the loader with anything but BotSpecError."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.botspec import BotSpecError, generate, parse_botspec

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, data: st.DataObject) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="n_mutations")):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = data.draw(st.sampled_from(["delete", "replace", "add_key", "rename"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = data.draw(_values, label="value")
        elif action == "add_key" and isinstance(parent[key], dict):
            parent[key][data.draw(st.text(max_size=8), label="key")] = data.draw(_values)
        elif action == "rename" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=10), label="new_key")] = parent.pop(key)
    return doc


def _check(text: str) -> None:
    try:
        spec = parse_botspec(text, source="fuzz.yaml")
    except BotSpecError as exc:
        # Every problem names the file and a key path.
        assert all(p.file == "fuzz.yaml" and p.path for p in exc.problems)
        return
    generate(spec)  # a spec that validates must generate


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_structural_mutations_only_raise_botspec_error(spec_text: str, data: st.DataObject) -> None:
    doc = yaml.safe_load(spec_text)
    _check(yaml.safe_dump(_mutate(doc, data), allow_unicode=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_text_mutations_only_raise_botspec_error(spec_text: str, data: st.DataObject) -> None:
    text = spec_text
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)), label="pos")
        cut = data.draw(st.integers(0, 8), label="cut")
        insert = data.draw(st.text(alphabet=":-[]{}&*!|>'\"#% \n\tab1", max_size=6))
        text = text[:pos] + insert + text[pos + cut:]
    _check(text)


@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_botspec_error(text: str) -> None:
    _check(text)
