"""Where the data contract of a CloudEvent type lives: one small value shared by the spec loader
(``services.common.botspec``) and the validators built from it (``services.common.contracts``).

A spec names a contract in one of four forms (paths are relative to the file that names them):

* ``contract: schemas/frame.schema.json`` -- a JSON Schema file (``.json``, ``.yaml``, ``.yml``);
* ``contract: {json_schema: schemas/frame.schema.json}`` -- the same, spelled out;
* ``contract: {pydantic: "package.module:Class"}`` -- a pydantic model, validated in JSON mode;
* ``contract: {asyncapi: asyncapi.yaml, message: Reading}`` -- the ``payload`` schema of one
  message of an AsyncAPI 3.0 document (``components.messages.NAME``, or a channel's message).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["ContractKind", "ContractRef", "parse_contract_ref"]

ContractKind = Literal["json_schema", "pydantic", "asyncapi"]

_SCHEMA_SUFFIXES = (".json", ".yaml", ".yml")
_PYDANTIC_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class ContractRef:
    """A contract's kind and location; ``target`` is an absolute path or ``module:Class``."""

    kind: ContractKind
    target: str
    #: the AsyncAPI message name (``kind == "asyncapi"`` only)
    message: str | None = None

    def __str__(self) -> str:
        if self.kind == "pydantic":
            return f"pydantic:{self.target}"
        if self.kind == "asyncapi":
            return f"asyncapi:{self.target}#{self.message}"
        return self.target

    @classmethod
    def from_str(cls, text: str) -> ContractRef:
        """The inverse of ``str(ref)``: how a generated configuration writes a contract."""
        if text.startswith("pydantic:"):
            return cls("pydantic", text.removeprefix("pydantic:"))
        if text.startswith("asyncapi:") and "#" in text:
            target, _, message = text.removeprefix("asyncapi:").rpartition("#")
            return cls("asyncapi", target, message)
        return cls("json_schema", text)


def _schema_path(value: Any, base_dir: Path, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what}: expected a file path, got {value!r}")
    path = Path(value)
    if path.suffix.lower() not in _SCHEMA_SUFFIXES:
        raise ValueError(
            f"{what}: {value!r} is not a schema file: expected a name ending in "
            f"{', '.join(_SCHEMA_SUFFIXES)}"
        )
    return str((base_dir / path).resolve())


def parse_contract_ref(value: Any, base_dir: Path | str) -> ContractRef:
    """Parse the value of a ``contract:`` key; relative paths are resolved against ``base_dir``.

    Raises ``ValueError`` naming what was given and what is expected. Whether the file exists is
    not checked here (the loader reports a missing file with its key path and line).
    """
    base = Path(base_dir)
    if isinstance(value, str):
        return ContractRef("json_schema", _schema_path(value, base, "contract"))
    if not isinstance(value, Mapping):
        raise ValueError(
            f"contract: expected a schema path or one of {{json_schema: PATH}}, "
            f"{{pydantic: 'module:Class'}}, {{asyncapi: PATH, message: NAME}}; got {value!r}"
        )
    keys = set(value)
    if keys == {"json_schema"}:
        return ContractRef("json_schema", _schema_path(value["json_schema"], base, "json_schema"))
    if keys == {"pydantic"}:
        target = value["pydantic"]
        if not isinstance(target, str) or not _PYDANTIC_REF.match(target):
            raise ValueError(f"pydantic: expected 'package.module:Class', got {target!r}")
        return ContractRef("pydantic", target)
    if keys == {"asyncapi", "message"}:
        message = value["message"]
        if not isinstance(message, str) or not message:
            raise ValueError(f"message: expected an AsyncAPI message name, got {message!r}")
        return ContractRef("asyncapi", _schema_path(value["asyncapi"], base, "asyncapi"), message)
    raise ValueError(
        f"contract: unknown form with keys {sorted(map(str, keys))}: expected "
        "{json_schema: PATH}, {pydantic: 'module:Class'} or {asyncapi: PATH, message: NAME}"
    )
