"""The ImageClassifierTraining CustomResourceDefinition, rendered from the pydantic models.

The API server needs a structural schema (a subset of OpenAPI v3): every node typed, no `$ref`,
no `anyOf` with null (`nullable: true` instead), no `additionalProperties` next to `properties`
(unknown fields are pruned, or refused by kubectl's strict field validation), and exclusive
bounds as booleans beside `minimum`/`maximum`. pydantic's JSON schema is walked and rewritten
into that form; anything it cannot express raises, naming the field, rather than rendering a
CRD the API server would refuse. Model validators (e.g. rescale only for scratch) have no
structural form: the operator runs the same pydantic validation and reports `InvalidSpec`.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from ict_api.spec import API_GROUP, API_VERSION, KIND, PLURAL, SHORT_NAME
from ict_api.spec import ImageClassifierTrainingSpec as Spec
from ict_api.status import ImageClassifierTrainingStatus as Status

CRD_NAME = f"{PLURAL}.{API_GROUP}"
# `all`: a training is a workload like the Job and Pods it owns, so `kubectl get all` shows it
# beside them. `ml` gathers it with other machine-learning resources (`kubectl get ml`).
CATEGORIES = ["ml", "all"]

PRINTER_COLUMNS = [
    {"name": "Strategy", "type": "string", "jsonPath": ".spec.strategy"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Epoch",
        "type": "string",
        "jsonPath": ".status.epoch",
        "description": "Completed/total epochs of the current stage.",
    },
    {
        "name": "Val Acc",
        "type": "number",
        "jsonPath": ".status.latestMetrics.val_accuracy",
        "description": "Validation accuracy of the last completed epoch.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Stage", "type": "string", "jsonPath": ".status.progress.stage", "priority": 1},
    {
        "name": "Best",
        "type": "number",
        "jsonPath": ".status.bestMetrics.val_accuracy",
        "description": "Validation accuracy of the best epoch so far.",
        "priority": 1,
    },
    {"name": "Job", "type": "string", "jsonPath": ".status.jobName", "priority": 1},
]

# Keys a node may keep, in the order they are written (so `kubectl explain` and diffs read well).
_KEY_ORDER = [
    "description",
    "type",
    "format",
    "nullable",
    "x-kubernetes-int-or-string",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
]


class _DefaultsJsonSchema(GenerateJsonSchema):
    """pydantic's JSON schema, plus the defaults of `default_factory` fields.

    pydantic leaves those out; the API server must apply them, or a resource created without
    e.g. `output` would lack the defaults the trainer sees.
    """

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return super().get_default_value(schema)

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, BaseModel):
            # Only what differs from the model's own field defaults: the API server applies
            # those itself when it descends into the defaulted object.
            return dft.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return super().encode_default(dft)


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of a pydantic model, as it reads and writes on the wire."""
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_DefaultsJsonSchema
    )
    return _structural(raw, raw.get("$defs", {}), model.__name__)


def _inline(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Resolves `$ref`, single-member `allOf` and `anyOf`/`oneOf` into one flat node.

    The node's own keys (a field's description and default) win over the definition's (a
    model's docstring), so a model docstring shows only where the field says nothing.
    """
    node = {key: value for key, value in node.items() if key not in ("title", "$defs")}
    if "$ref" in node:
        target = defs[node.pop("$ref").removeprefix("#/$defs/")]
        node = {**_inline(target, defs, path), **node}
    if "allOf" in node:  # pydantic wraps a lone $ref this way
        members = node.pop("allOf")
        if len(members) != 1:
            raise ValueError(f"{path}: allOf {members!r} has no structural form; use one type.")
        node = {**_inline(members[0], defs, path), **node}
    variants = node.pop("anyOf", None) or node.pop("oneOf", None)
    if variants is not None:
        others = [v for v in variants if v.get("type") != "null"]
        if len(others) < len(variants):
            node["nullable"] = True
        if len(others) == 1:
            node = {**_inline(others[0], defs, path), **node}
        elif sorted(v.get("type") for v in others) == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        else:
            raise ValueError(
                f"{path}: a union of {others!r} has no structural-schema form; use one type "
                "(optionally | None), int | str, or a model per variant behind a field."
            )
    return node


def _structural(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _inline(node, defs, path)
    if "default" in node and node["default"] is None:
        del node["default"]  # absent and null read the same; a null default adds nothing
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node:
        # The API server checks an enum even against null, and refuses it. Without `nullable`
        # it prunes a null instead, and an absent field reads as None in pydantic too.
        node.pop("nullable", None)
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node and not isinstance(node[exclusive], bool):
            node[inclusive], node[exclusive] = node[exclusive], True  # OpenAPI v3.0 form
    if "properties" in node:
        # extra="forbid" gives additionalProperties: false, which a CRD may not say: the API
        # server prunes unknown fields (or refuses them under strict field validation).
        if node.pop("additionalProperties", False) is not False:
            raise ValueError(
                f"{path}: a model that keeps unknown fields (extra='allow') cannot be a CRD "
                "object next to its properties; use extra='forbid'."
            )
        node["properties"] = {
            name: _structural(child, defs, f"{path}.{name}")
            for name, child in node["properties"].items()
        }
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], defs, f"{path}.*")
    elif "additionalProperties" in node:
        raise ValueError(f"{path}: a map of untyped values; give dict[str, T] a concrete T.")
    if "items" in node:
        node["items"] = _structural(node["items"], defs, f"{path}[]")
    unknown = {k for k in node if k not in _KEY_ORDER and not k.startswith("x-kubernetes-")}
    if unknown:
        raise ValueError(
            f"{path}: pydantic produced {sorted(unknown)!r}, which a CRD schema does not take; "
            "drop the constraint or teach ict_api.crd its OpenAPI v3 form."
        )
    if "type" not in node and not node.get("x-kubernetes-int-or-string"):
        raise ValueError(f"{path}: {node!r} has no type; a structural schema needs one.")
    order = {key: i for i, key in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda item: order.get(item[0], len(order))))


def resource_schema() -> dict[str, Any]:
    """openAPIV3Schema of the whole resource; metadata is left to the API server."""
    return {
        "description": (
            f"{KIND} trains an image classifier from a few hundred labelled pictures: a Job "
            "runs `ict train` with this spec and the status reports its progress and results."
        ),
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": f"Versioned schema of this object: {API_GROUP}/{API_VERSION}.",
                "type": "string",
            },
            "kind": {"description": f"Always {KIND}.", "type": "string"},
            "metadata": {"type": "object"},  # the API server forbids anything more here
            "spec": model_schema(Spec),
            "status": model_schema(Status),
        },
    }


def render_crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict, ready for YAML or the API."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": resource_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated from ict_api by `ict crd` (`make crds`); do not edit.\n"
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=100)
