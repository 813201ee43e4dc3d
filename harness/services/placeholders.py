"""Placeholders in a service's ``command``, ``env`` and ``cwd``: ``{nats_url}``, ``{run_dir}``...

Written with :meth:`str.format` syntax (``{{`` and ``}}`` are literal braces). The names are a
closed, documented set so a typo is caught when the scenario loads, before anything starts,
not as a ``KeyError`` half-way through bringing the platform up.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

__all__ = ["BARE_PYTHON", "PLACEHOLDERS", "expand", "expand_command", "known_placeholders",
           "placeholder_problems"]

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
    "python": "the Python interpreter the harness runs under (sys.executable), so the service "
    "sees the same installed packages; in a container, the image's python3",
}

#: A command whose first word is one of these runs under the harness's own interpreter, as if
#: it had been written ``{python}``: the ``python`` first on PATH is often another one (a venv
#: not activated), and the user then gets "No module named ..." for a package they installed.
BARE_PYTHON = frozenset({"python", "python3"})

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


def expand_command(command: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``command`` with its placeholders replaced and a bare ``python``/``python3`` as its
    first word replaced by ``values["python"]`` (the harness's interpreter on the host)."""
    argv = [expand(a, values) for a in command]
    if argv and argv[0] in BARE_PYTHON and values.get("python"):
        argv[0] = values["python"]
    return argv
