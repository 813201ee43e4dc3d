"""nats-server configuration rendering and free-port selection."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["deep_merge", "free_ports", "render_config"]

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1 (bind port 0, then release).

    All sockets stay open until every port is chosen, so the ports are distinct; another
    process may still grab one before nats-server binds it, which the callers retry.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into a copy of ``base``; nested mappings merge, other values replace."""
    out: dict[str, Any] = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _value(value: Any, indent: str, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escaping is valid nats-server config syntax.
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{\n" + _block(value, indent + "  ", path) + indent + "}"
    if isinstance(value, list | tuple):
        items = ", ".join(_value(v, indent, f"{path}[{i}]") for i, v in enumerate(value))
        return f"[{items}]"
    raise TypeError(
        f"nats-server config {path}: unsupported value {value!r} of type "
        f"{type(value).__name__}; expected str, int, float, bool, list or mapping"
    )


def _block(config: Mapping[str, Any], indent: str, path: str) -> str:
    lines = []
    for key, value in config.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"nats-server config {path or '<root>'}: bad key {key!r}")
        if value is None:
            continue
        sub = f"{path}.{key}" if path else key
        lines.append(f"{indent}{key}: {_value(value, indent, sub)}\n")
    return "".join(lines)


def render_config(config: Mapping[str, Any]) -> str:
    """Render a mapping as nats-server config text (``None`` values are omitted)."""
    return _block(config, "", "")
