"""Models of the registrar's own lifecycle events (the ``data`` it publishes and stores).

The registrar publishes one CloudEvent per lifecycle step on its events subject, type
``qiki.registrar.v1.<step>`` (:meth:`services.registrar.codemap.CodeMapper.lifecycle_types`). Every
``data`` carries the code, its name and the instance; some steps add fields:

=====================================  ====  ============================================
type                                   code  extra fields
=====================================  ====  ============================================
``qiki.registrar.v1.boot_start``       100   ``db`` (store path)
``qiki.registrar.v1.boot_ok``          101   ``durables``, ``batch``, ``http``
``qiki.registrar.v1.boot_failed``      102   ``error`` (stored only: NATS may be down)
``qiki.registrar.v1.nats_connected``   410   ``server`` (credentials masked), ``reconnect``
``qiki.registrar.v1.nats_disconnected`` 411  --
``qiki.registrar.v1.recovery_start``   910   --
``qiki.registrar.v1.recovery_ok``      911   ``seconds``, ``attempts``
``qiki.registrar.v1.storage_failed``   930   ``error``, ``db`` (published at once, stored later)
``qiki.registrar.v1.storage_ok``       931   ``seconds``, ``batches_refused``
=====================================  ====  ============================================

The shipped contracts (``scenarios/contracts/registrar-*.schema.json``) are generated from
these models, and a test runs a real registrar and validates what it publishes against them,
so the service, the models and the files cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BootFailed",
    "BootOk",
    "BootStart",
    "LifecycleData",
    "NatsConnected",
    "NatsDisconnected",
    "RecoveryOk",
    "RecoveryStart",
    "StorageFailed",
    "StorageOk",
]


class LifecycleData(BaseModel):
    """What every lifecycle event's data holds: the code, its name and the instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: int = Field(ge=100, le=999, description="registrar code of this step")
    name: str = Field(min_length=1, description="the code's name, e.g. BOOT_OK")
    instance: str = Field(min_length=1, description="registrar instance (host:pid)")


class BootStart(LifecycleData):
    """100 BOOT_START: the store is open, NATS not yet connected."""

    code: Literal[100]
    name: Literal["BOOT_START"]
    db: str = Field(min_length=1, description="path of the SQLite store")


class BootOk(LifecycleData):
    """101 BOOT_OK: consumers bound, HTTP serving."""

    code: Literal[101]
    name: Literal["BOOT_OK"]
    durables: list[str] = Field(description="durable consumers the registrar reads")
    batch: int = Field(ge=1, description="fetch batch size")
    http: str = Field(min_length=1, description="query/metrics base URL")


class BootFailed(LifecycleData):
    """102 BOOT_FAILED: start raised; the error (truncated) says why."""

    code: Literal[102]
    name: Literal["BOOT_FAILED"]
    error: str = Field(max_length=1000)


class NatsConnected(LifecycleData):
    """410 NATS_CONNECTED: first connection, or ``reconnect`` after a disconnection."""

    code: Literal[410]
    name: Literal["NATS_CONNECTED"]
    server: str | None = Field(default=None, description="server URL, credentials masked")
    reconnect: bool = False


class NatsDisconnected(LifecycleData):
    """411 NATS_DISCONNECTED."""

    code: Literal[411]
    name: Literal["NATS_DISCONNECTED"]


class RecoveryStart(LifecycleData):
    """910 RECOVERY_START: reconnected; re-binding the consumers."""

    code: Literal[910]
    name: Literal["RECOVERY_START"]


class RecoveryOk(LifecycleData):
    """911 RECOVERY_OK: every consumer answers again."""

    code: Literal[911]
    name: Literal["RECOVERY_OK"]
    seconds: float = Field(ge=0.0, description="time the recovery took")
    attempts: int = Field(ge=0, description="consumer_info calls it took")


class StorageFailed(LifecycleData):
    """930 STORAGE_FAILED: the store refused a write (disk full, I/O error); batches stay
    unacked and come back. Published at once, stored once the store takes writes again."""

    code: Literal[930]
    name: Literal["STORAGE_FAILED"]
    error: str = Field(max_length=1000, description="what SQLite or the OS said")
    db: str = Field(min_length=1, description="path of the SQLite store")


class StorageOk(LifecycleData):
    """931 STORAGE_OK: a commit succeeded again."""

    code: Literal[931]
    name: Literal["STORAGE_OK"]
    seconds: float = Field(ge=0.0, description="how long the store refused writes")
    batches_refused: int = Field(ge=0, description="batches not stored (left for redelivery)")
