"""Placeholders in a service's ``command``, ``env`` and ``cwd``: ``{nats_url}``, ``{run_dir}``...

Written with :meth:`str.format` syntax (``{{`` and ``}}`` are literal braces). The names are a
closed, documented set so a typo is caught when the scenario loads, before anything starts,
not as a ``KeyError`` half-way through bringing the platform up.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

__all__ = ["PLACEHOLDERS", "expand", "known_placeholders", "placeholder_problems"]

#: Every placeholder a service definition may use, with what it stands for (README table).
PLACEHOLDERS: dict[str, str] = {
    "nats_url": "the NATS URL(s) this service connects to (comma-separated; the fault proxy's "
    "URL when proxied; never with credentials)",
    "nats_host": "host of the first NATS URL",
    "nats_port": "port of the first NATS URL",
    "run_dir": "this run's directory (reports/RUN_ID), absolute",
    "service": "the service's name in topology.services",
    "spec": "the platform spec file, absolute",
    "scenario_dir": "the directory of the scenario file, absolute",
    "http_port": "a free TCP port chosen by the harness for this service (kept across restarts)",
}

_FORMATTER = string.Formatter()


def known_placeholders() -> str:
    """``{nats_url}, {nats_host}, ...``: for error messages."""
    return ", ".join(f"{{{k}}}" for k in PLACEHOLDERS)


def placeholder_problems(text: str) -> list[str]:
    """What is wrong with the placeholders in ``text`` (empty when nothing is)."""
    try:
        fields = [f for _, f, _, _ in _FORMATTER.parse(text) if f is not None]
    except ValueError as exc:
        return [f"{text!r} is not a valid template ({exc}); write {{{{ and }}}} for literal braces"]
    out: list[str] = []
    for f in fields:
        if f not in PLACEHOLDERS:
            shown = f"{{{f}}}" if f else "{}"
            out.append(f"unknown placeholder {shown} in {text!r}")
    return out


def expand(text: str, values: Mapping[str, str]) -> str:
    """``text`` with its placeholders replaced (checked already when the scenario loaded)."""
    return text.format_map(dict(values))
