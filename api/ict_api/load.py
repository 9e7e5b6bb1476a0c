"""Reading a spec from YAML: a whole ImageClassifierTraining manifest or a bare spec."""

from __future__ import annotations

import copy
import os
import typing
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ict_api.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    ImageClassifierTraining,
    ImageClassifierTrainingSpec,
)


class SpecError(ValueError):
    """An invalid spec; the message names every bad field, what it got and what it takes."""


def load_file(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    assignments: list[str] | None = None,
):
    """Reads FILE (manifest or bare spec), applies dotted-path overrides, validates."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            f"cannot read spec file {str(path)!r}: {exc.strerror}. Check the path."
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{str(path)!r} is not valid YAML: {exc}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SpecError(
            f"{str(path)!r} holds a {type(document).__name__}, not a mapping: give an "
            f"{KIND} manifest or its spec."
        )
    return load_document(document, overrides, assignments)


def load_env(
    variable: str,
    overrides: dict[str, Any] | None = None,
    assignments: list[str] | None = None,
):
    """Reads the manifest (JSON or YAML) held by an environment variable (a trainer pod's)."""
    text = os.environ.get(variable)
    if not text:
        raise SpecError(
            f"environment variable {variable!r} is unset or empty; it must hold the "
            f"{KIND} manifest (the operator sets it on the trainer pod)."
        )
    try:
        document = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise SpecError(f"${variable} is not valid JSON or YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise SpecError(f"${variable} holds a {type(document).__name__}, not a mapping.")
    return load_document(document, overrides, assignments)


def load_document(
    document: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    assignments: list[str] | None = None,
):
    """Returns (name, spec) from a manifest or bare-spec mapping after overrides.

    overrides maps dotted wire paths to values (None: not given); assignments are `--set`
    strings, PATH=VALUE, applied after them. A bare spec's run is named after its output.
    """
    document = copy.deepcopy(document)
    is_manifest = "kind" in document or "apiVersion" in document
    spec_data = document.get("spec") if is_manifest else document
    if spec_data is None:
        spec_data = {}
    if not isinstance(spec_data, dict):
        raise SpecError(f"spec: got {spec_data!r}; it must be a mapping of fields.")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(spec_data, dotted, value)
    for dotted, value in parse_assignments(assignments or []).items():
        _set_dotted(spec_data, dotted, value)
    if not is_manifest:
        spec = validate_spec(spec_data)
        return run_name_for(spec.output.uri), spec
    document["spec"] = spec_data
    try:
        manifest = ImageClassifierTraining.model_validate(document)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, ImageClassifierTraining)) from None
    return manifest.metadata.name, manifest.spec


def validate_spec(data: dict[str, Any]) -> ImageClassifierTrainingSpec:
    try:
        return ImageClassifierTrainingSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, ImageClassifierTrainingSpec, prefix=("spec",))) from None


def run_name_for(output_uri: str) -> str:
    """A run without a manifest is named after its output folder (or bucket prefix)."""
    if output_uri.startswith("s3://"):
        return PurePosixPath(output_uri.removeprefix("s3://")).name
    return Path(output_uri).resolve().name or "local"


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """`--set PATH=VALUE` strings -> {dotted path: value typed as the spec's field takes it}.

    A field that takes text (strings, enums) gets VALUE as written; others get it read as a
    YAML scalar or flow collection (0.35, false, [16, 32], {a: b}); a list field also takes
    comma-separated items (helm's a,b). Unknown paths are left for validation to name.
    """
    parsed = {}
    for assignment in assignments:
        path, equals, raw = assignment.partition("=")
        if not equals or not path or any(not part for part in path.split(".")):
            raise SpecError(
                f"--set {assignment!r}: expected PATH=VALUE with PATH a dotted spec field, "
                "e.g. --set model.alpha=0.35 or --set training.earlyStopping.patience=5."
            )
        parsed[path] = _typed(_annotation_at(path.split(".")), raw, assignment)
    return parsed


def _typed(annotation: Any, raw: str, assignment: str) -> Any:
    if _takes_text(annotation):
        return raw
    if _list_item(annotation) is not None and not raw.lstrip().startswith("["):
        item = _list_item(annotation)
        return [_typed(item, part.strip(), assignment) for part in raw.split(",") if part.strip()]
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError as exc:
        raise SpecError(f"--set {assignment!r}: the value is not valid YAML ({exc}).") from None


def _options(annotation: Any) -> tuple:
    """The types a field's annotation accepts, Annotated and Optional unwrapped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _options(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        return tuple(t for arg in typing.get_args(annotation) for t in _options(arg))
    return (annotation,)


def _takes_text(annotation: Any) -> bool:
    return any(isinstance(t, type) and issubclass(t, str) for t in _options(annotation))


def _list_item(annotation: Any) -> Any:
    for option in _options(annotation):
        if typing.get_origin(option) is list:
            return typing.get_args(option)[0]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    options = _options(annotation)
    return next((t for t in options if isinstance(t, type) and issubclass(t, BaseModel)), None)


def _annotation_at(parts, root: Any = ImageClassifierTrainingSpec) -> Any:
    """The annotation of the field at a path of names below root, or None when there is none."""
    annotation: Any = root
    for part in parts:
        model = _model_in(annotation)
        if model is None:
            return None
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        annotation = field.annotation
    return annotation


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = data.setdefault(key, {})
        if not isinstance(child, dict):
            raise SpecError(f"spec.{dotted}: cannot set it, {key!r} holds {child!r}.")
        data = child
    data[leaf] = value


def format_errors(exc: ValidationError, root: type[BaseModel], prefix: tuple = ()) -> str:
    lines = [f"invalid {KIND} ({exc.error_count()} problem(s)):"]
    for error in exc.errors(include_url=False):
        loc = prefix + tuple(error["loc"])
        path = ".".join(str(part) for part in loc)
        lines.append(f"  {path}: {_explain(error, root, error['loc'])}")
    if root is ImageClassifierTraining:
        lines.append(f"  (apiVersion must be {API_GROUP}/{API_VERSION}, kind {KIND})")
    return "\n".join(lines)


def _explain(error: dict[str, Any], root: type[BaseModel], loc: tuple) -> str:
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(root, loc[:-1])
        return f"unknown field; allowed fields here: {', '.join(allowed)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "enum":
        return f"got {got!r}; allowed values: {error['ctx']['expected']}"
    message = error["msg"]
    if message.startswith("Value error, "):
        return message.removeprefix("Value error, ")
    return f"got {got!r}; {message[0].lower()}{message[1:]}"


def _fields_at(root: type[BaseModel], loc: tuple) -> list[str]:
    """Wire names of the fields of the model found at loc below root."""
    model = _model_in(_annotation_at(loc, root))
    if model is None:
        return []
    return sorted(f.alias or name for name, f in model.model_fields.items())
