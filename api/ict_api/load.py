"""Reading a spec from YAML: a whole ImageClassifierTraining manifest or a bare spec."""

from __future__ import annotations

import copy
import os
from pathlib import Path
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


def load_file(path: str | Path, overrides: dict[str, Any] | None = None):
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
    return load_document(document, overrides)


def load_env(variable: str, overrides: dict[str, Any] | None = None):
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
    return load_document(document, overrides)


def load_document(document: dict[str, Any], overrides: dict[str, Any] | None = None):
    """Returns (name, spec) from a manifest or bare-spec mapping after overrides."""
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
    if not is_manifest:
        return "local", validate_spec(spec_data)
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
    model: Any = root
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return []
        model = _model_of(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(f.alias or name for name, f in model.model_fields.items())
    return []


def _model_of(annotation: Any) -> Any:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return annotation
