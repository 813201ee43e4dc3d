"""``open_broker``: one entry point for every backend, and the registry behind it.

A backend is a callable ``(*, nodes, url, **options) -> Broker`` (the broker is not started;
``async with`` starts it). Built-in: ``process`` and ``external``. ``container`` is loaded on
first use from ``harness.broker.container:create_broker`` when that module exists.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, Literal

from harness.broker.base import Broker
from harness.broker.errors import BrokerError

__all__ = ["BackendFactory", "BackendName", "backends", "open_broker", "register_backend"]

BackendName = Literal["process", "container", "external"]
BackendFactory = Callable[..., Broker]

# Lazily imported backends: "module:function". Keeps docker/testcontainers out of imports
# that do not need them.
_LAZY: dict[str, str] = {"container": "harness.broker.container:create_broker"}
_FACTORIES: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Register (or replace) a backend factory under ``name``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    _FACTORIES[name] = factory


def backends() -> list[str]:
    """Names of every known backend (built-in, lazy and registered)."""
    return sorted({*_FACTORIES, *_LAZY})


def _process(*, nodes: int = 1, url: str | None = None, **options: Any) -> Broker:
    from harness.broker.process import NatsCluster, NatsServer

    if url is not None:
        raise ValueError("backend 'process' starts its own servers; url= is for 'external'")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be an int >= 1, got {nodes!r}")
    if nodes == 1:
        return NatsServer(**options)
    return NatsCluster(nodes, **options)


def _external(*, nodes: int = 1, url: str | None = None, **options: Any) -> Broker:
    from harness.broker.external import CREDENTIAL_ENV, ExternalBroker, credentials_from_env

    if not url:
        raise ValueError(
            "backend 'external' needs url=, e.g. nats://127.0.0.1:4222 (comma-separated for a "
            "cluster)"
        )
    if not any(options.get(k) for k in CREDENTIAL_ENV.values()):
        # What the README promises: an external broker's credentials come from QIKI_NATS_*;
        # every client of a run (tap, lag sampler, load, services) gets them from the
        # broker's settings, so they are read here, once.
        options.update(credentials_from_env())
    if not options.get("inbox_prefix") and os.environ.get("QIKI_NATS_INBOX_PREFIX"):
        # The operator's reply prefix, if its permissions name one (README "Security").
        options["inbox_prefix"] = os.environ["QIKI_NATS_INBOX_PREFIX"]
    return ExternalBroker(url, **options)


register_backend("process", _process)
register_backend("external", _external)


def _resolve(backend: str) -> BackendFactory:
    if backend in _FACTORIES:
        return _FACTORIES[backend]
    target = _LAZY.get(backend)
    if target is None:
        raise ValueError(f"unknown broker backend {backend!r}; expected one of {backends()}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the backend exists but one of its own imports is missing: show that
        raise BrokerError(f"{backend} backend not available in this build") from None
    factory: BackendFactory = getattr(module, attr)
    _FACTORIES[backend] = factory
    return factory


def open_broker(
    backend: BackendName | str = "process",
    *,
    nodes: int = 1,
    url: str | None = None,
    **options: Any,
) -> Broker:
    """Create a broker of ``backend``; use it as ``async with open_broker(...) as broker``.

    ``nodes``: 1 or more (process/container); ``url``: required for ``external``.
    ``options`` go to the backend (e.g. ``sync_always=True``, ``store_dir=...``,
    ``route_url_for=...`` for process; ``token=``/``user=``/``password=``/``creds_file=``
    for external). Misuse raises ``ValueError``; an unavailable backend :class:`BrokerError`.
    """
    return _resolve(backend)(nodes=nodes, url=url, **options)
