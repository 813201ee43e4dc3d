"""Data contracts: what the ``data`` of a CloudEvent type must look like, validated fast.

A spec names a contract per CloudEvent type (:class:`~services.common.contract_ref.ContractRef`:
a JSON Schema file, a pydantic ``module:Class`` or an AsyncAPI 3.0 message). A
:class:`ContractRegistry` compiles each contract once and validates data against it::

    registry = ContractRegistry.from_refs({"qiki.radar.v1.Frame": ref})
    registry.validate("qiki.radar.v1.Frame", {"frame_id": -1})        # -> [DataViolation, ...]
    registry.validate_json("qiki.radar.v1.Frame", b'{"frame_id": 1}')  # from the raw payload

Validators (picked by measurement, ``python -m bench.contract``): JSON Schema and AsyncAPI
payload schemas go to ``jsonschema_rs`` (Rust; formats such as ``date-time`` are asserted,
remote ``$ref``s are never fetched); pydantic models validate the raw JSON with
``TypeAdapter.validate_json(strict=True)``: a contract says what is on the wire, so ``"5"`` is
not an integer. Valid data costs one ``is_valid`` call; the error details are only collected
for data that failed.

Every violation is a :class:`DataViolation` naming the JSON pointer, the schema keyword, the
offending value (truncated) and a message. A contract that cannot be compiled (missing file,
bad JSON/YAML, not a schema, unknown AsyncAPI message, unimportable model) raises
:class:`ContractError` naming the file or model and what is wrong.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from services.common.contract_ref import ContractRef

__all__ = [
    "MAX_VIOLATIONS",
    "CompiledContract",
    "ContractError",
    "ContractIndexEntry",
    "ContractRegistry",
    "DataViolation",
    "compile_contract",
    "contract_index_refs",
    "json_pointer",
    "load_asyncapi_payload",
    "read_contract_index",
    "schema_from_model",
]

#: Details collected per message at most: one broken frame can break a thousand detections.
MAX_VIOLATIONS: Final = 20
#: Offending values are cut to this many characters in reports.
MAX_VALUE_CHARS: Final = 120
#: Messages are cut to this many characters (validators quote the value in them).
MAX_MESSAGE_CHARS: Final = 300
DEFAULT_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
#: AsyncAPI's default schema format is a superset of JSON Schema draft 7.
ASYNCAPI_DIALECT: Final = "http://json-schema.org/draft-07/schema#"

# pydantic error type -> the JSON Schema keyword that says the same, so a violation reads the
# same whichever form the contract takes.
_PYDANTIC_KEYWORDS: Final[dict[str, str]] = {
    "missing": "required",
    "extra_forbidden": "additionalProperties",
    "greater_than_equal": "minimum",
    "greater_than": "exclusiveMinimum",
    "less_than_equal": "maximum",
    "less_than": "exclusiveMaximum",
    "string_too_short": "minLength",
    "string_too_long": "maxLength",
    "too_short": "minItems",
    "too_long": "maxItems",
    "literal_error": "enum",
    "enum": "enum",
    "string_pattern_mismatch": "pattern",
    "multiple_of": "multipleOf",
    "int_type": "type",
    "int_parsing": "type",
    "int_from_float": "type",
    "float_type": "type",
    "float_parsing": "type",
    "finite_number": "type",
    "string_type": "type",
    "bool_type": "type",
    "bool_parsing": "type",
    "list_type": "type",
    "dict_type": "type",
    "model_type": "type",
    "model_attributes_type": "type",
    "none_required": "type",
    "datetime_type": "format",
    "datetime_parsing": "format",
    "datetime_from_date_parsing": "format",
    "timezone_aware": "format",
    "date_parsing": "format",
    "uuid_parsing": "format",
    "url_parsing": "format",
    "json_invalid": "json",
}


class ContractError(ValueError):
    """A contract cannot be compiled; the message names the file (or model) and the problem."""


@dataclass(frozen=True, slots=True)
class DataViolation:
    """One way data breaks its contract.

    ``pointer`` is an RFC 6901 JSON pointer into the data (``""`` is the whole document),
    ``keyword`` the schema keyword that failed (``minimum``, ``required``, ``type``...;
    ``json`` when the data is not JSON at all), ``value`` the offending value as JSON,
    truncated to :data:`MAX_VALUE_CHARS`.
    """

    pointer: str
    keyword: str
    value: str | None
    message: str

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready dict (journal, reports)."""
        return {
            "pointer": self.pointer,
            "keyword": self.keyword,
            "value": self.value,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: [{self.keyword}] {self.message} (value {self.value})"


def json_pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 pointer of a path of keys and indexes (``~`` and ``/`` escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _short(value: Any) -> str | None:
    if value is None:
        return "null"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        return text[:MAX_VALUE_CHARS] + "..."
    return text


def _parse_data(raw: bytes | str) -> tuple[Any, DataViolation | None]:
    # pydantic-core's parser: about 3x json.loads on frames, and strict where json.loads is
    # lenient: NaN and Infinity are not JSON (RFC 8259) and most consumers cannot parse them.
    from pydantic_core import from_json

    try:
        return from_json(raw, allow_inf_nan=False), None
    except ValueError as exc:
        text = bytes(raw[:MAX_VALUE_CHARS]).decode("utf-8", "replace") if isinstance(
            raw, bytes | bytearray) else raw
        return None, DataViolation("", "json", _short(text), f"data is not JSON: {exc}")


#: Schema keywords holding a numeric limit.
_LIMITS: Final = frozenset(
    {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
)


def _integral_limits(node: Any) -> Any:
    """The schema with integral float limits written as integers (``0.0`` -> ``0``).

    The same number to JSON Schema, but jsonschema_rs compares against a float limit several
    times slower than against an integer one (pydantic writes ``ge=0.0`` as ``0.0``): 4x on the
    radar frame contract (bench.contract).
    """
    if isinstance(node, Mapping):
        return {
            k: int(v) if k in _LIMITS and isinstance(v, float) and v.is_integer()
            and abs(v) < 2**53 else _integral_limits(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_integral_limits(x) for x in node]
    return node


# --------------------------------------------------------------------------------------------
# Compiled contracts


class CompiledContract:
    """One contract, compiled: ``validate(data)`` and ``validate_json(raw)`` give violations."""

    ref: ContractRef
    #: the JSON Schema the data is checked against (for pydantic: the model's schema)
    schema: Mapping[str, Any]
    #: NATS subjects (AsyncAPI channel addresses) that carry this message, when known
    addresses: tuple[str, ...] = ()

    def validate(self, data: Any) -> list[DataViolation]:
        """Every violation of already-decoded JSON data (empty: valid)."""
        raise NotImplementedError

    def carried_on(self, subject: str) -> bool:
        """Whether a NATS subject is one this message may travel on: always, unless the
        contract names channel addresses (AsyncAPI), where ``{param}`` matches one token."""
        if not self.addresses:
            return True
        toks = subject.split(".")
        return any(_address_matches(a.split("."), toks) for a in self.addresses)

    def validate_json(self, raw: bytes | str) -> list[DataViolation]:
        """Every violation of raw JSON data (not JSON at all is a ``json`` violation)."""
        data, bad = _parse_data(raw)
        if bad is not None:
            return [bad]
        return self.validate(data)


def _address_matches(pattern: list[str], subject: list[str]) -> bool:
    # AsyncAPI parameters ({zone}) and NATS wildcards (* and a trailing >) in an address.
    for i, tok in enumerate(pattern):
        if tok == ">":
            return len(subject) > i
        if i >= len(subject):
            return False
        if tok != "*" and not (tok.startswith("{") and tok.endswith("}")) and tok != subject[i]:
            return False
    return len(pattern) == len(subject)


class _SchemaContract(CompiledContract):
    """A JSON Schema, compiled by ``jsonschema_rs``."""

    def __init__(
        self,
        ref: ContractRef,
        schema: Mapping[str, Any],
        *,
        origin: str,
        dialect: str = DEFAULT_DIALECT,
        addresses: tuple[str, ...] = (),
    ) -> None:
        import jsonschema_rs

        self.ref = ref
        self.schema = schema
        self.addresses = addresses
        self._check_schema(schema, origin, dialect)
        try:
            validator = jsonschema_rs.validator_for(
                _integral_limits(schema),
                validate_formats=True,
                base_uri=Path(ref.target).resolve().as_uri() if ref.kind != "pydantic" else None,
            )
        except (jsonschema_rs.ValidationError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ContractError(f"{origin}: the schema does not compile: {first}") from None
        self._is_valid: Callable[[Any], bool] = validator.is_valid
        self._iter_errors: Callable[[Any], Iterator[Any]] = validator.iter_errors

    @staticmethod
    def _check_schema(schema: Mapping[str, Any], origin: str, dialect: str) -> None:
        """Validate the schema against its meta-schema, naming where it is wrong."""
        import jsonschema_rs

        meta = dict(schema)
        meta.setdefault("$schema", dialect)
        try:
            jsonschema_rs.meta.validate(meta)
        except jsonschema_rs.ValidationError as exc:
            where = json_pointer(exc.instance_path) or "/"
            raise ContractError(
                f"{origin}: not a valid JSON Schema: at {where}: {exc.message}"
            ) from None
        except ValueError as exc:  # e.g. an unknown $schema dialect
            raise ContractError(f"{origin}: not a valid JSON Schema: {exc}") from None

    def validate(self, data: Any) -> list[DataViolation]:
        if self._is_valid(data):
            return []
        out: list[DataViolation] = []
        for top in self._iter_errors(data):
            for err in _best_errors(top):
                out.append(
                    DataViolation(json_pointer(err.instance_path), _keyword(err),
                                  _short(err.instance), _cut(err.message))
                )
            if len(out) >= MAX_VIOLATIONS:
                break
        return out[:MAX_VIOLATIONS]


def _keyword(err: Any) -> str:
    return next((str(p) for p in reversed(err.schema_path) if isinstance(p, str)), "schema")


def _best_errors(err: Any) -> list[Any]:
    """The errors that say what is wrong, for an ``anyOf``/``oneOf`` failure.

    ``x: str | None`` becomes ``anyOf: [{type: string, maxLength: 512}, {type: null}]``: a too
    long string fails both branches, and "not valid under any of the schemas" hides why. When
    exactly one branch failed for a reason other than the type, its errors are the answer (the
    relevance rule of ``jsonschema.exceptions.best_match``).
    """
    branches = getattr(err.kind, "context", None)
    if branches:
        relevant = [b for b in branches if b and any(_keyword(e) != "type" for e in b)]
        if len(relevant) == 1:
            return [x for e in relevant[0] for x in _best_errors(e)]
    return [err]


def _cut(message: str) -> str:
    # jsonschema_rs quotes the whole offending value in its message; what failed is said at
    # the end ("... is longer than 512 characters"), so keep both ends.
    if len(message) > MAX_MESSAGE_CHARS:
        half = MAX_MESSAGE_CHARS // 2
        return f"{message[:half]} ... {message[-half:]}"
    return message


class _PydanticContract(CompiledContract):
    """A pydantic model (or any type a ``TypeAdapter`` takes), validated strictly as JSON."""

    def __init__(self, ref: ContractRef, cls: Any) -> None:
        from pydantic import TypeAdapter

        self.ref = ref
        try:
            self._adapter: Any = TypeAdapter(cls)
            self.schema = self._adapter.json_schema()
        except Exception as exc:
            raise ContractError(
                f"{ref}: {ref.target} is not a type pydantic can validate: {exc}"
            ) from None

    def validate(self, data: Any) -> list[DataViolation]:
        # JSON mode on purpose (what a consumer reading the wire sees): re-encode the value.
        return self.validate_json(json.dumps(data))

    def validate_json(self, raw: bytes | str) -> list[DataViolation]:
        from pydantic import ValidationError

        try:
            self._adapter.validate_json(raw, strict=True)
        except ValidationError as exc:
            return [self._violation(e) for e in exc.errors(include_url=False)[:MAX_VIOLATIONS]]
        return []

    @staticmethod
    def _violation(err: Mapping[str, Any]) -> DataViolation:
        loc = list(err.get("loc", ()))
        kind = str(err.get("type", "schema"))
        keyword = _PYDANTIC_KEYWORDS.get(kind, kind)
        if kind == "missing" and loc:
            # JSON Schema reports a missing property at the object that lacks it.
            name = loc.pop()
            return DataViolation(json_pointer(loc), keyword, None,
                                 f"{json.dumps(str(name))} is a required property")
        value = err.get("input")
        if kind == "extra_forbidden" and loc:
            name = loc.pop()
            return DataViolation(json_pointer(loc), keyword, _short(value),
                                 f"Additional properties are not allowed ({name!r} was unexpected)")
        return DataViolation(json_pointer(loc), keyword, _short(value), str(err.get("msg", "")))


# --------------------------------------------------------------------------------------------
# Loading


def _read_document(path: Path, what: str) -> Any:
    """A JSON or YAML document; errors name the file, and the line where the parser has one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(f"{what} {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"{what} {path}: cannot read it: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(
                f"{what} {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContractError(f"{what} {path}: invalid YAML{where}: {problem}") from None


def _resolve_local(doc: Any, node: Any, origin: str, seen: tuple[str, ...] = ()) -> Any:
    """Follow a ``{"$ref": "#/..."}`` node to what it points at (refs to refs included)."""
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#"):
            raise ContractError(
                f"{origin}: $ref {ref!r}: only local references (starting with '#') are "
                "supported in AsyncAPI documents"
            )
        if ref in seen:
            raise ContractError(f"{origin}: $ref cycle: {' -> '.join((*seen, ref))}")
        seen = (*seen, ref)
        target: Any = doc
        for raw in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and key in target:
                target = target[key]
            elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                target = target[int(key)]
            else:
                raise ContractError(f"{origin}: $ref {ref!r} points at nothing in the document")
        node = target
    return node


def _check_local_refs(doc: Any, node: Any, origin: str) -> None:
    """Every ``$ref`` inside a payload schema must be local and resolvable (an error now,
    not a surprise at the first message)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, Mapping):
            if isinstance(cur.get("$ref"), str):
                _resolve_local(doc, {"$ref": cur["$ref"]}, origin)
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def load_asyncapi_payload(path: Path, message: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The JSON Schema of one message's ``payload`` in an AsyncAPI 3.0 document, and the NATS
    subjects (channel ``address``) of the channels that carry it.

    The message is looked up as ``components.messages.NAME``, then as a channel's
    ``messages.NAME``, then by its ``name`` field. Local ``$ref``s (``#/components/...``) are
    resolved; the document's ``components`` ride along so refs inside the payload still work.
    """
    origin = f"AsyncAPI document {path}"
    doc = _read_document(path, "AsyncAPI document")
    if not isinstance(doc, Mapping):
        raise ContractError(f"{origin}: expected a mapping at the top, got {type(doc).__name__}")
    version = str(doc.get("asyncapi", ""))
    if not version.startswith("3."):
        raise ContractError(
            f"{origin}: 'asyncapi: {version or '(missing)'}': expected an AsyncAPI 3.x document "
            "(asyncapi: 3.0.0)"
        )
    components = doc.get("components") or {}
    channels = doc.get("channels") or {}
    if not isinstance(components, Mapping) or not isinstance(channels, Mapping):
        raise ContractError(f"{origin}: 'components' and 'channels' must be mappings")

    found: Any = None
    addresses: list[str] = []
    comp_messages = components.get("messages") or {}
    if isinstance(comp_messages, Mapping) and message in comp_messages:
        found = _resolve_local(doc, comp_messages[message], origin)
        if found is None:
            found = {}  # declared but empty: reported below as having no payload
    for ch_name, channel in channels.items():
        channel = _resolve_local(doc, channel, origin)
        if not isinstance(channel, Mapping):
            continue
        msgs = channel.get("messages") or {}
        if not isinstance(msgs, Mapping):
            continue
        for key, msg in msgs.items():
            resolved = _resolve_local(doc, msg, origin)
            named = isinstance(resolved, Mapping) and resolved.get("name") == message
            if key == message or named or (found is not None and resolved is found):
                if found is None:
                    found = resolved
                address = channel.get("address")
                if not isinstance(address, str) or not address:
                    raise ContractError(
                        f"{origin}: channel {ch_name!r} carries message {message!r} but has no "
                        "'address' (the NATS subject)"
                    )
                addresses.append(address)
    if found is None and isinstance(comp_messages, Mapping):
        for msg in comp_messages.values():
            resolved = _resolve_local(doc, msg, origin)
            if isinstance(resolved, Mapping) and resolved.get("name") == message:
                found = resolved
    if not isinstance(found, Mapping):
        known = sorted(str(k) for k in comp_messages) if isinstance(comp_messages, Mapping) else []
        for channel in channels.values():
            channel = _resolve_local(doc, channel, origin)
            if isinstance(channel, Mapping) and isinstance(channel.get("messages"), Mapping):
                known.extend(str(k) for k in channel["messages"] if str(k) not in known)
        raise ContractError(
            f"{origin}: no message {message!r}; the document has: "
            f"{', '.join(known) or '(no messages)'}"
        )
    if "payload" not in found:
        raise ContractError(f"{origin}: message {message!r} has no 'payload' schema")
    payload = _resolve_local(doc, found["payload"], origin)
    if isinstance(payload, Mapping) and "schemaFormat" in payload and "schema" in payload:
        fmt = str(payload["schemaFormat"])
        if "json" not in fmt.lower() and "asyncapi" not in fmt.lower():
            raise ContractError(
                f"{origin}: message {message!r}: schemaFormat {fmt!r} is not supported "
                "(AsyncAPI or JSON Schema formats only)"
            )
        payload = _resolve_local(doc, payload["schema"], origin)
    if not isinstance(payload, Mapping | bool):
        raise ContractError(
            f"{origin}: message {message!r}: payload must be a schema object, "
            f"got {type(payload).__name__}"
        )
    if isinstance(payload, bool):
        return {"$schema": ASYNCAPI_DIALECT, **({} if payload else {"not": {}})}, tuple(addresses)
    _check_local_refs(doc, payload, origin)
    schema = dict(payload)
    schema.setdefault("$schema", ASYNCAPI_DIALECT)
    if components and "components" not in schema:
        schema["components"] = components  # '#/components/schemas/X' resolves against the root
    return schema, tuple(addresses)


def _import_model(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ContractError(
            f"pydantic:{target}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ContractError(f"pydantic:{target}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ContractError(
            f"pydantic:{target}: not a class but {type(obj).__name__}: name a pydantic model "
            "(or a dataclass / TypedDict pydantic can validate)"
        )
    return obj


def compile_contract(ref: ContractRef) -> CompiledContract:
    """Compile one contract; raises :class:`ContractError` naming the file and the problem."""
    if ref.kind == "pydantic":
        return _PydanticContract(ref, _import_model(ref.target))
    path = Path(ref.target)
    if ref.kind == "asyncapi":
        schema, addresses = load_asyncapi_payload(path, ref.message or "")
        origin = f"AsyncAPI document {path} message {ref.message!r}"
        return _SchemaContract(ref, schema, origin=origin, dialect=ASYNCAPI_DIALECT,
                               addresses=addresses)
    doc = _read_document(path, "contract file")
    if not isinstance(doc, Mapping | bool):
        raise ContractError(
            f"contract file {path}: a JSON Schema is an object (or true/false), "
            f"got {type(doc).__name__}"
        )
    body: Mapping[str, Any] = doc if isinstance(doc, Mapping) else ({} if doc else {"not": {}})
    dialect = str(body.get("$schema", DEFAULT_DIALECT))
    return _SchemaContract(ref, body, origin=f"contract file {path}", dialect=dialect)


# --------------------------------------------------------------------------------------------
# The registry


class ContractRegistry:
    """CloudEvent type -> compiled contract; each distinct contract is compiled once."""

    def __init__(self, contracts: Mapping[str, CompiledContract]) -> None:
        self._contracts: dict[str, CompiledContract] = dict(contracts)

    @classmethod
    def from_refs(cls, refs: Mapping[str, ContractRef]) -> ContractRegistry:
        """Compile every contract; raises :class:`ContractError` listing every broken one."""
        compiled: dict[ContractRef, CompiledContract] = {}
        problems: list[str] = []
        by_type: dict[str, CompiledContract] = {}
        for type_, ref in refs.items():
            if ref not in compiled:
                try:
                    compiled[ref] = compile_contract(ref)
                except ContractError as exc:
                    problems.append(f"{type_}: {exc}")
                    continue
            by_type[type_] = compiled[ref]
        if problems:
            raise ContractError(
                f"{len(problems)} contract(s) cannot be compiled:\n  - " + "\n  - ".join(problems)
            )
        return cls(by_type)

    @property
    def declared(self) -> frozenset[str]:
        """The CloudEvent types that have a contract."""
        return frozenset(self._contracts)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._contracts

    def __len__(self) -> int:
        return len(self._contracts)

    def contract(self, type_: str) -> CompiledContract:
        """The compiled contract of a type; ``KeyError`` naming the declared types if none."""
        try:
            return self._contracts[type_]
        except KeyError:
            raise KeyError(
                f"no contract for CloudEvent type {type_!r}; declared: "
                f"{', '.join(sorted(self._contracts)) or '(none)'}"
            ) from None

    def validate(self, type_: str, data: Any) -> list[DataViolation]:
        """Every violation of decoded data of a declared type (``KeyError`` if undeclared)."""
        return self.contract(type_).validate(data)

    def validate_json(self, type_: str, raw: bytes | str) -> list[DataViolation]:
        """Every violation of raw JSON data of a declared type (``KeyError`` if undeclared)."""
        return self.contract(type_).validate_json(raw)


def schema_from_model(cls: Any, *, comment: str | None = None) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a pydantic model or type, as the shipped contract files hold
    it: pydantic's validation-mode schema with ``$schema`` first and an optional ``$comment``."""
    from pydantic import TypeAdapter

    body = TypeAdapter(cls).json_schema(mode="validation")
    out: dict[str, Any] = {"$schema": DEFAULT_DIALECT}
    if comment:
        out["$comment"] = comment
    out.update(body)
    return out


# --------------------------------------------------------------------------------------------
# A contract index: which shipped file describes which types (scenarios/contracts/qiki.yaml)


@dataclass(frozen=True)
class ContractIndexEntry:
    """One contract file of an index, the CloudEvent types it describes and, when it is
    generated, the pydantic model it is generated from."""

    path: Path
    types: tuple[str, ...]
    model: str | None = None


def read_contract_index(path: Path) -> list[ContractIndexEntry]:
    """Read an index file (``contracts: [{file, types: [...], model?}, ...]``); file paths are
    relative to the index. Raises :class:`ContractError` naming the file and the entry."""
    doc = _read_document(path, "contract index")
    entries = doc.get("contracts") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list):
        raise ContractError(f"contract index {path}: expected 'contracts: [...]' at the top")
    out: list[ContractIndexEntry] = []
    for i, e in enumerate(entries):
        ok = (isinstance(e, Mapping) and isinstance(e.get("file"), str)
              and isinstance(e.get("types"), list) and e["types"]
              and all(isinstance(t, str) and t for t in e["types"])
              and isinstance(e.get("model", ""), str))
        if not ok:
            raise ContractError(
                f"contract index {path}: contracts[{i}]: expected {{file: NAME, types: [TYPE, "
                f"...], model: 'module:Class' (optional)}}, got {e!r}"
            )
        out.append(ContractIndexEntry((path.parent / e["file"]).resolve(),
                                      tuple(e["types"]), e.get("model")))
    return out


def contract_index_refs(path: Path) -> dict[str, ContractRef]:
    """CloudEvent type -> its JSON Schema file, for every type an index lists."""
    return {
        t: ContractRef("json_schema", str(e.path)) for e in read_contract_index(path)
        for t in e.types
    }
