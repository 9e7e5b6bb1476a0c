"""Kubernetes protobuf request bodies, decoded for the few kinds Go clients send that way.

kubectl's typed commands (`create secret`, `create configmap`, `create namespace`) and helm's
release storage (Secrets, and DeleteOptions when it purges them) send
`application/vnd.kubernetes.protobuf`. A body is the magic
`k8s\\0` then a runtime.Unknown {typeMeta=1 {apiVersion=1, kind=2}, raw=2}; `raw` is the typed
message. Only the fields below are decoded (field numbers from k8s.io/api generated.proto);
other kinds answer 415. Responses are always JSON, which these clients also accept.
"""

from __future__ import annotations

import base64

MAGIC = b"k8s\x00"

# message name -> {field number: (json name, type)}; a type is "string", "bytes", "int",
# "bool", "map<string>", "map<bytes>", "[string]", a message name, or "[Message]".
SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        11: ("labels", "map<string>"),
        12: ("annotations", "map<string>"),
        13: ("ownerReferences", "[OwnerReference]"),
        14: ("finalizers", "[string]"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map<bytes>"),
        3: ("type", "string"),
        4: ("stringData", "map<string>"),
        5: ("immutable", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map<string>"),
        3: ("binaryData", "map<bytes>"),
        4: ("immutable", "bool"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "[string]")},
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int"),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", "[string]"),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a message, in order."""
    pairs: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            pairs.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            pairs.append((number, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in field {number}")
    return pairs


def _value(kind: str, raw: int | bytes) -> object:
    if kind == "string":
        return bytes(raw).decode()  # type: ignore[arg-type]
    if kind == "bytes":
        return bytes(raw)  # type: ignore[arg-type]
    if kind == "int":
        return raw
    if kind == "bool":
        return bool(raw)
    return decode(kind, bytes(raw))  # type: ignore[arg-type]


def decode(message: str, data: bytes) -> dict:
    schema = SCHEMAS[message]
    result: dict = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind.startswith("map<"):
            entry = dict(_fields(bytes(raw)))  # type: ignore[arg-type]
            value = _value(kind[4:-1], entry.get(2, b""))
            if kind == "map<bytes>":
                value = base64.b64encode(value).decode()  # type: ignore[arg-type]
            result.setdefault(name, {})[_value("string", entry.get(1, b""))] = value
        elif kind.startswith("["):
            result.setdefault(name, []).append(_value(kind[1:-1], raw))
        else:
            result[name] = _value(kind, raw)
    return result


def decode_object(body: bytes) -> dict:
    """A JSON-shaped object from a Kubernetes protobuf body; ValueError for other kinds."""
    if not body.startswith(MAGIC):
        raise ValueError("a Kubernetes protobuf body starts with k8s\\0")
    unknown = decode("Unknown", body[len(MAGIC) :])
    type_meta = unknown.get("typeMeta", {})
    kind = type_meta.get("kind", "")
    if kind not in ("Secret", "ConfigMap", "Namespace", "DeleteOptions"):
        raise ValueError(f"protobuf bodies of kind {kind!r} are not decoded; send JSON")
    obj = decode(kind, unknown.get("raw", b""))
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
