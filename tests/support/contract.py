"""The published API contract of the services the test bed serves, checked as the services do.

moto accepts requests that the real services refuse: eleven image ids where DescribeImageReferences
takes at most ten, a DeregisterImage without an ImageId, an attribute name that does not exist, a
parameter that no operation has. A function that sends such a request passes its tests and then
fails in an account. This module refuses those requests before moto sees them.

The contract is botocore's service model (the `service-2.json` of each service, the data the AWS
SDKs are generated from, shipped with moto's botocore): for every operation, the shape of its
input, with each member's type, which members are required, and the constraints on values
(list and string lengths, integer ranges, enum values, patterns). Checked:

- EC2, `ec2` query protocol (a form-encoded body: `Action=X&Version=...&ImageId.1=...`). The flat
  parameters are read back into the operation's input shape by the naming rules of botocore's
  `EC2Serializer` (botocore/serialize.py): a member's key is its `queryName`, else its
  `locationName` with the first letter capitalised, else the member name; a list's items are
  always `Key.1` ... `Key.N`, whatever its member is called; a structure's members are
  `Key.Member`. The EC2 model has no map in any input. Violations are answered with EC2's error
  codes (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html):
  `MissingParameter` for a required member that is absent, `UnknownParameter` for a parameter
  that is no member of the input, `InvalidParameterValue` for a value the model refuses.
- STS, `query` protocol (botocore's `QuerySerializer`): as EC2's, except that a member's key is
  its `locationName` or its name, as written, and a list's items are `Key.member.1` ...
  `Key.member.N` (no STS list is flattened). Answered in STS's XML error format.
- EventBridge, KMS and SSM, JSON protocol (a JSON body, the operation in `X-Amz-Target`): the
  same checks on the JSON document, answered as those services answer a request their
  validation refuses: `ValidationException`, with a message in their style ("1 validation error
  detected: Value '' at 'keyId' failed to satisfy constraint: Member must have length greater
  than or equal to 1").

Not checked (passed through for moto to answer): any other service, an operation the model does
not have, and patterns that Python's `re` cannot read (Java's `\\p{L}` classes, used by 15 SSM and
EventBridge shapes; see `_compile_pattern`). Patterns are searched, not matched whole, as Smithy
defines them (https://smithy.io/2.0/spec/constraint-traits.html#pattern-trait); most anchor
themselves with `^...$`.

Entry points: `check_request(environ, body)` for the WSGI launcher, `check_query(model, params)`
and `check_json(model, operation, document)` for the two protocols.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, TypeAlias, Union
from urllib.parse import parse_qsl

import botocore.session
from botocore.model import OperationNotFoundError, ServiceModel, Shape

_SESSION = botocore.session.get_session()
#: EC2's model, loaded once (about 0.2 s) when the test bed starts.
EC2: ServiceModel = _SESSION.get_service_model("ec2")
#: STS's model (the query protocol).
STS: ServiceModel = _SESSION.get_service_model("sts")
#: The JSON-protocol services the test bed serves, by the prefix of their `X-Amz-Target`.
JSON_SERVICES: dict[str, ServiceModel] = {
    model.metadata["targetPrefix"]: model
    for model in (_SESSION.get_service_model(name) for name in ("events", "kms", "ssm", "sqs", "organizations"))
}

#: Query parameters that belong to the protocol, not to the operation's input.
PROTOCOL_PARAMS = frozenset({"Action", "Version"})
#: Smithy's integer and long are 32 and 64 bit.
INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
#: Patterns of the model that no value can match (a `^` in the middle): a defect of the model,
#: not something the service can mean, so they are not checked.
DEFECTIVE_PATTERNS = frozenset({r"^arn:aws([a-z-]+)?:ec2:[a-z\d-]+:\d{12}:placement-group/^.{1,255}$"})

# ISO 8601 as botocore (`_timestamp_iso8601`) and the Rust SDK (`Format::DateTime`) write it:
# a date, a time, optional fractional seconds, and `Z` or an offset.
_ISO8601 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)", re.ASCII)
_INTEGER = re.compile(r"-?\d+", re.ASCII)
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|NaN|-?Infinity", re.ASCII)
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")

# The query parameters read back into a tree: a node holds the value given for its own key under
# `_VALUE` (None), and the nodes of the parameters below it under their next key part.
_VALUE = None
Node: TypeAlias = dict[Union[str, None], Any]


class Spec:
    """One shape of the model, reduced to what the checks need (built once per shape)."""

    __slots__ = (
        "name",
        "type",
        "min",
        "max",
        "enum",
        "pattern",
        "members",
        "required",
        "member",
        "key",
        "value",
        "wrapped",
    )

    def __init__(self, shape: Shape):
        self.name: str = shape.name
        self.type: str = shape.type_name
        meta = shape.metadata
        self.min: int | float | None = meta.get("min")
        self.max: int | float | None = meta.get("max")
        self.enum: frozenset[str] | None = frozenset(shape.enum) if getattr(shape, "enum", None) else None
        self.pattern: re.Pattern[str] | None = _compile_pattern(meta.get("pattern"))
        #: structure: members by their key on the wire.
        self.members: dict[str, Member] = {}
        #: structure: the required members.
        self.required: tuple[Member, ...] = ()
        #: list: the items' shape; map: the keys' and values' shapes.
        self.member: Spec | None = None
        self.key: Spec | None = None
        self.value: Spec | None = None
        #: list, query protocol: its items are under `member` (`Key.member.N`).
        self.wrapped = False


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a structure: its name in the model, its key on the wire, its shape."""

    name: str
    wire: str
    spec: Spec


@dataclass(frozen=True, slots=True)
class Violation:
    """A request the contract refuses: the protocol to answer in, the error code, the message."""

    protocol: str  # "ec2" or "sts" (their XML error bodies) or "json" (JSON error body)
    code: str
    message: str


def _compile_pattern(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern or pattern in DEFECTIVE_PATTERNS:
        return None
    try:
        # ASCII: in Java's regular expressions, which the models' patterns are written for,
        # \d, \w and \s are ASCII classes.
        return re.compile(pattern, re.ASCII)
    except re.error:
        return None  # Java's \p{L}, \p{Z}, ... classes: not checked


def _ec2_wire_name(name: str, shape: Shape) -> str:
    """A member's key, as botocore's `EC2Serializer._get_serialized_name` writes it."""
    serialization = shape.serialization
    if "queryName" in serialization:
        return str(serialization["queryName"])
    if "name" in serialization:
        location = str(serialization["name"])
        return location[0].upper() + location[1:]
    return name


def _query_wire_name(name: str, shape: Shape) -> str:
    """A member's key, as botocore's `QuerySerializer._get_serialized_name` writes it."""
    return str(shape.serialization.get("name", name))


def _json_wire_name(name: str, shape: Shape) -> str:
    """A member's key, as botocore's `JSONSerializer` writes it."""
    return str(shape.serialization.get("name", name))


class _Compiler:
    """Builds the `Spec` tree of one service's shapes, each shape once (the model may share or
    nest shapes, so a shape is registered before its members are built)."""

    def __init__(self, wire_name: Any, wrapped_lists: bool = False):
        self.wire_name = wire_name
        self.wrapped_lists = wrapped_lists
        self.specs: dict[str, Spec] = {}

    def spec(self, shape: Shape) -> Spec:
        known = self.specs.get(shape.name)
        if known is not None:
            return known
        spec = self.specs[shape.name] = Spec(shape)
        if spec.type == "structure":
            for name, member_shape in shape.members.items():
                wire = self.wire_name(name, member_shape)
                spec.members[wire] = Member(name, wire, self.spec(member_shape))
            required = set(shape.required_members)
            spec.required = tuple(m for m in spec.members.values() if m.name in required)
        elif spec.type == "list":
            spec.member = self.spec(shape.member)
            spec.wrapped = self.wrapped_lists and not shape.serialization.get("flattened")
        elif spec.type == "map":
            spec.key = self.spec(shape.key)
            spec.value = self.spec(shape.value)
        return spec


_COMPILERS: dict[str, _Compiler] = {}
# (service, operation) -> the input's Spec; None for an operation without input or not in the model.
_OPERATIONS: dict[tuple[str, str], Spec | None] = {}
_ABSENT = object()
_BUILDING = threading.Lock()


def input_spec(model: ServiceModel, operation: str) -> Spec | None:
    """The checks for the input of `operation`, built on first use and cached."""
    key = (model.service_name, operation)
    found = _OPERATIONS.get(key, _ABSENT)
    if found is not _ABSENT:
        return found  # type: ignore[return-value]
    # The server is threaded: a shape is registered before its members are built, so a spec
    # must never be seen half built. Build under one lock; publish only whole specs.
    with _BUILDING:
        found = _OPERATIONS.get(key, _ABSENT)
        if found is not _ABSENT:
            return found  # type: ignore[return-value]
        spec = _build(model, operation)
        _OPERATIONS[key] = spec
        return spec


def _build(model: ServiceModel, operation: str) -> Spec | None:
    spec = None
    try:
        shape = model.operation_model(operation).input_shape
    except OperationNotFoundError:
        shape = None
    if shape is not None:
        compiler = _COMPILERS.get(model.service_name)
        if compiler is None:
            wire = {"ec2": _ec2_wire_name, "query": _query_wire_name}.get(model.protocol, _json_wire_name)
            compiler = _COMPILERS[model.service_name] = _Compiler(wire, model.protocol == "query")
        spec = compiler.spec(shape)
    return spec


# ---------------------------------------------------------------------------------------------
# EC2: the query protocol.
# ---------------------------------------------------------------------------------------------
QueryParams = Union[Mapping[str, Union[str, list[str]]], Iterable[tuple[str, str]]]


def _show(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def _values(values: frozenset[str], limit: int = 20) -> str:
    ordered = sorted(values)
    shown = ", ".join(ordered[:limit])
    return shown if len(ordered) <= limit else f"{shown}, ... ({len(ordered)} values)"


def _between(lo: Any, hi: Any, unit: str) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}{unit}"
    if lo is not None:
        return f"at least {lo}{unit}"
    return f"at most {hi}{unit}"


def check_query(model: ServiceModel, params: QueryParams) -> tuple[str, str] | None:
    """The first violation of the EC2 contract in these query parameters, as (EC2 error code,
    message); None when the request keeps the contract or names no operation of the model.

    `params` is a mapping (values a string or a list of strings, as `parse_qs` gives them) or a
    sequence of (key, value) pairs (as `parse_qsl` gives them)."""
    pairs: list[tuple[str, str]]
    if isinstance(params, list):
        pairs = params
    elif isinstance(params, Mapping):
        pairs = []
        for k, v in params.items():
            pairs.extend((k, x) for x in ([v] if isinstance(v, str) else v))
    else:
        pairs = list(params)
    action = next((v for k, v in pairs if k == "Action"), None)
    spec = input_spec(model, action) if action else None
    if spec is None:
        return None
    root: Node = {}
    for key, value in pairs:
        if key in PROTOCOL_PARAMS:
            continue
        node = root
        for part in key.split("."):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
        if _VALUE in node:
            return "InvalidParameterValue", f"The parameter {key} is given more than once"
        node[_VALUE] = value
    return next(_check_query_structure(spec, root, ""), None)


def _check_query_structure(spec: Spec, node: Node, path: str) -> Iterator[tuple[str, str]]:
    if _VALUE in node:
        # `LaunchPermission=x`: a structure has members, not a value.
        yield "UnknownParameter", f"The parameter {path} is not recognized"
        return
    prefix = f"{path}." if path else ""
    present: list[tuple[Member, Node]] = []
    for part, child in node.items():
        found = spec.members.get(part) if part is not None else None
        if found is None:
            yield "UnknownParameter", f"The parameter {prefix}{part} is not recognized"
            return
        present.append((found, child))
    for member in spec.required:
        if member.wire not in node:
            yield "MissingParameter", f"The request must contain the parameter {prefix}{member.wire}"
            return
    for member, child in present:
        yield from _check_query_node(member.spec, child, prefix + member.wire, member.name)


def _check_query_node(spec: Spec, node: Node, path: str, name: str) -> Iterator[tuple[str, str]]:
    kind = spec.type
    if kind == "structure":
        yield from _check_query_structure(spec, node, path)
        return
    if kind == "list":
        yield from _check_query_list(spec, node, path, name)
        return
    for part in node:
        if part is not _VALUE:
            # `ImageId.1.Foo`: a value has no parameters below it.
            yield "UnknownParameter", f"The parameter {path}.{part} is not recognized"
            return
    if _VALUE not in node:
        return
    problem = _scalar_problem(spec, node[_VALUE])
    if problem:
        yield "InvalidParameterValue", f"Value ({_show(node[_VALUE])}) for parameter {path} is invalid. {problem}"


def _check_query_list(spec: Spec, node: Node, path: str, name: str) -> Iterator[tuple[str, str]]:
    if spec.wrapped:
        # The query protocol: `Key.member.N`; anything else below `Key` is no parameter.
        for part in node:
            if part != "member":
                shown = path if part is _VALUE else f"{path}.{part}"
                yield "UnknownParameter", f"The parameter {shown} is not recognized"
                return
        node, path = node.get("member", {}), f"{path}.member"
    label = path if path.rsplit(".", 1)[-1] == name else f"{path} ({name})"
    indices: list[int] = []
    for part in node:
        # Items are `Key.1` ... `Key.N`; a bare `Key=` (the query protocol's empty list, which
        # botocore's EC2Serializer never writes) or `Key.01` / `Key.0` / `Key.x` is no parameter.
        if part is _VALUE or not (part.isascii() and part.isdigit()) or part[0] == "0":
            shown = path if part is _VALUE else f"{path}.{part}"
            yield "UnknownParameter", f"The parameter {shown} is not recognized"
            return
        indices.append(int(part))
    indices.sort()
    count = len(indices)
    if count and indices[-1] != count:
        numbers = ", ".join(map(str, indices[:12])) + (", ..." if count > 12 else "")
        yield (
            "InvalidParameterValue",
            f"The parameter {label} has items numbered {numbers}: items are numbered 1 to N without gaps",
        )
        return
    if (spec.min is not None and count < spec.min) or (spec.max is not None and count > spec.max):
        yield (
            "InvalidParameterValue",
            f"The parameter {label} must contain {_between(spec.min, spec.max, ' items')}, got {count}",
        )
        return
    item = spec.member
    assert item is not None
    for index in indices:
        yield from _check_query_node(item, node[str(index)], f"{path}.{index}", item.name)


def _scalar_problem(spec: Spec, text: str) -> str | None:
    """What is wrong with a query parameter's value for this shape (a string on the wire)."""
    kind = spec.type
    if kind == "string":
        return _string_problem(spec, text)
    if kind in ("integer", "long"):
        if not _INTEGER.fullmatch(text):
            return "Expected an integer."
        number = int(text)
        lo, hi = INT_RANGE[kind]
        if not lo <= number <= hi:
            return f"Expected a {32 if kind == 'integer' else 64}-bit integer."
        return _range_problem(spec, number)
    if kind == "boolean":
        return None if text in ("true", "false") else "Expected true or false."
    if kind in ("double", "float"):
        if not _NUMBER.fullmatch(text):
            return "Expected a number."
        return _range_problem(spec, float(text))
    if kind == "timestamp":
        return None if _is_iso8601(text) else "Expected an ISO 8601 date and time, such as 2025-01-31T12:00:00Z."
    if kind == "blob":
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return "Expected base64."
        return _length_problem(spec, len(data), " bytes")
    return None


def _is_iso8601(text: str) -> bool:
    if not _ISO8601.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _string_problem(spec: Spec, text: str) -> str | None:
    if spec.enum is not None and text not in spec.enum:
        return f"Expected one of: {_values(spec.enum)}."
    problem = _length_problem(spec, len(text), " characters")
    if problem:
        return problem
    if spec.pattern is not None and not spec.pattern.search(text):
        return f"It must match the pattern {spec.pattern.pattern}."
    return None


def _length_problem(spec: Spec, length: int, unit: str) -> str | None:
    if (spec.min is not None and length < spec.min) or (spec.max is not None and length > spec.max):
        return f"Its length must be {_between(spec.min, spec.max, unit)}, not {length}."
    return None


def _range_problem(spec: Spec, number: float) -> str | None:
    if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
        return f"It must be {_between(spec.min, spec.max, '')}."
    return None


# ---------------------------------------------------------------------------------------------
# EventBridge, KMS, SSM: the JSON protocol.
# ---------------------------------------------------------------------------------------------
#: At most this many violations are listed in one message (the services list each one).
MAX_JSON_ERRORS = 10


def check_json(model: ServiceModel, operation: str, document: Any) -> tuple[str, str] | None:
    """The violations of the contract in a JSON request, as ("ValidationException", message);
    None when it keeps the contract or `operation` is not in the model."""
    spec = input_spec(model, operation)
    if spec is None:
        return None
    errors: list[str] = []
    for error in _check_json(spec, document, "", spec.name):
        errors.append(error)
        if len(errors) == MAX_JSON_ERRORS:
            break
    if not errors:
        return None
    count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected"
    return "ValidationException", f"{count}: " + "; ".join(errors)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"'{_show(text)}'"


def _check_json(spec: Spec, value: Any, path: str, shape: str) -> Iterator[str]:
    kind = spec.type
    where = f"at '{path}'" if path else "as the request body"
    if kind == "structure":
        if not isinstance(value, dict):
            yield f"Value {_quote(value)} {where} failed to satisfy constraint: Member must be an object"
            return
        members = spec.members
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in members:
                place = f"at '{path}'" if path else "in the request"
                yield f"'{key}' {place} is not a member of {spec.name}"
        for member in spec.required:
            if value.get(member.wire) is None:
                yield f"Value null at '{prefix}{_camel(member.name)}' failed to satisfy constraint: Member must not be null"
        for key, item in value.items():
            found = members.get(key)
            if found is not None and item is not None:
                yield from _check_json(found.spec, item, prefix + _camel(found.name), shape)
        return
    if kind == "list":
        if not isinstance(value, list):
            yield f"Value {_quote(value)} {where} failed to satisfy constraint: Member must be a list"
            return
        problem = _length_problem(spec, len(value), "")
        if problem:
            yield f"Value {_quote(value)} {where} failed to satisfy constraint: {_coral_length(spec)}"
        assert spec.member is not None
        for index, item in enumerate(value, 1):
            if item is None:
                yield f"Value null at '{path}.{index}.member' failed to satisfy constraint: Member must not be null"
            else:
                yield from _check_json(spec.member, item, f"{path}.{index}.member", shape)
        return
    if kind == "map":
        if not isinstance(value, dict):
            yield f"Value {_quote(value)} {where} failed to satisfy constraint: Member must be a map"
            return
        if _length_problem(spec, len(value), ""):
            yield f"Value {_quote(value)} {where} failed to satisfy constraint: {_coral_length(spec)}"
        assert spec.key is not None and spec.value is not None
        for key, item in value.items():
            yield from _check_json(spec.key, key, f"{path}.{key}.key", shape)
            if item is not None:
                yield from _check_json(spec.value, item, f"{path}.{key}.value", shape)
        return
    problem = _json_scalar_problem(spec, value)
    if problem:
        yield f"Value {_quote(value)} {where} failed to satisfy constraint: {problem}"


def _coral_length(spec: Spec) -> str:
    parts = []
    if spec.min is not None:
        parts.append(f"Member must have length greater than or equal to {spec.min}")
    if spec.max is not None:
        parts.append(f"Member must have length less than or equal to {spec.max}")
    return ", ".join(parts)


def _json_scalar_problem(spec: Spec, value: Any) -> str | None:
    kind = spec.type
    if kind == "string":
        if not isinstance(value, str):
            return "Member must be a string"
        if spec.enum is not None and value not in spec.enum:
            return f"Member must satisfy enum value set: [{_values(spec.enum)}]"
        if _length_problem(spec, len(value), ""):
            return _coral_length(spec)
        if spec.pattern is not None and not spec.pattern.search(value):
            return f"Member must satisfy regular expression pattern: {spec.pattern.pattern}"
        return None
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return "Member must be an integer"
        lo, hi = INT_RANGE[kind]
        if not lo <= value <= hi:
            return f"Member must be a {32 if kind == 'integer' else 64}-bit integer"
        return _coral_range(spec, value)
    if kind in ("double", "float"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "Member must be a number"
        return _coral_range(spec, value)
    if kind == "boolean":
        return None if isinstance(value, bool) else "Member must be true or false"
    if kind == "timestamp":
        # botocore's JSONSerializer and the Rust SDK both write epoch seconds (a JSON number).
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "Member must be a timestamp in epoch seconds"
        return None
    if kind == "blob":
        if not isinstance(value, str):
            return "Member must be base64 text"
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return "Member must be base64 text"
        return _coral_length(spec) if _length_problem(spec, len(data), "") else None
    return None


def _coral_range(spec: Spec, number: float) -> str | None:
    if spec.min is not None and number < spec.min:
        return f"Member must have value greater than or equal to {spec.min}"
    if spec.max is not None and number > spec.max:
        return f"Member must have value less than or equal to {spec.max}"
    return None


# ---------------------------------------------------------------------------------------------
# The launcher's entry point.
# ---------------------------------------------------------------------------------------------
def signing_service(environ: Mapping[str, Any]) -> str | None:
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(2) if found else None


def signing_region(environ: Mapping[str, Any]) -> str:
    """The region a request is signed for (SigV4's credential scope; us-east-1 if unsigned)."""
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else "us-east-1"


def check_request(environ: Mapping[str, Any], body: bytes) -> Violation | None:
    """The violation of the contract in one WSGI request (its body already read), or None.

    EC2: a query-protocol request signed for `ec2` (or, unsigned, giving EC2's API version).
    JSON services: a request whose `X-Amz-Target` names EventBridge, KMS, SSM or SQS. Anything else,
    and any operation the model does not have, is None: moto answers it."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        prefix, _, operation = target.rpartition(".")
        model = JSON_SERVICES.get(prefix)
        if model is None:
            return None
        try:
            document = json.loads(body) if body.strip() else {}
        except ValueError as err:
            return Violation("json", "ValidationException", f"The request body is not JSON: {err}")
        found = check_json(model, operation, document)
        return Violation("json", *found) if found else None
    service = signing_service(environ)
    if service == "sts":
        found = check_query(STS, _query_pairs(environ, body))
        return Violation("sts", *found) if found else None
    if service is not None and service != "ec2":
        return None
    pairs = _query_pairs(environ, body)
    if service is None and ("Version", EC2.metadata["apiVersion"]) not in pairs:
        return None
    found = check_query(EC2, pairs)
    return Violation("ec2", *found) if found else None


def _query_pairs(environ: Mapping[str, Any], body: bytes) -> list[tuple[str, str]]:
    """A query-protocol request's parameters: its query string's, then its form body's."""
    query = environ.get("QUERY_STRING")
    pairs = parse_qsl(query, keep_blank_values=True) if query else []
    if body:
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return pairs
