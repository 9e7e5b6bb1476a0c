"""A resource's spec, checked as the trainer checks it plus the rules of a cluster.

A pod's local folders vanish with it and it holds nothing of the user's laptop, so every
location a cluster run reads or writes must be a bucket.
"""

from __future__ import annotations

from typing import Any

from ict_api import SpecError, validate_spec
from ict_api.spec import ImageClassifierTrainingSpec

WEIGHTS_KEYWORDS = ("imagenet", "none")


def validate_resource(body: dict[str, Any]) -> ImageClassifierTrainingSpec:
    """The resource's spec, validated; SpecError lists every problem with its field path."""
    spec = validate_spec(dict(body.get("spec") or {}))
    problems = list(_cluster_problems(spec))
    if problems:
        lines = "\n".join(f"  {path}: {why}" for path, why in problems)
        raise SpecError(f"invalid ImageClassifierTraining ({len(problems)} problem(s)):\n{lines}")
    return spec


def _cluster_problems(spec: ImageClassifierTrainingSpec):
    locations = {
        "spec.dataset.uri": spec.dataset.uri,
        "spec.output.uri": spec.output.uri,
        "spec.cache.uri": spec.cache.uri,
    }
    if spec.model.weights.lower() not in WEIGHTS_KEYWORDS:
        locations["spec.model.weights"] = spec.model.weights
    for path, uri in locations.items():
        if uri is not None and not uri.startswith("s3://"):
            yield (
                path,
                f"got {uri!r}; on a cluster it must be an s3://bucket/prefix URI (a trainer "
                "pod's local files are not yours and vanish with it). Upload it to a bucket "
                "(aws s3 sync, mc mirror) and give its s3:// URI.",
            )
    if spec.storage.endpoint and not spec.storage.credentials_secret:
        yield (
            "spec.storage.credentialsSecret",
            f"required with storage.endpoint {spec.storage.endpoint!r}: name a Secret in this "
            "namespace holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (see "
            "examples/s3-credentials.yaml).",
        )
