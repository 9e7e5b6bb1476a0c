"""The trainer Job of a resource: a pure function of the resource, its spec and the settings."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ict_api.spec import API_GROUP, API_VERSION, KIND, ImageClassifierTrainingSpec
from ict_operator.settings import OperatorSettings

CONTAINER = "trainer"
SCRATCH = "/scratch"  # the only writable folder: the root filesystem is read-only
TERMINATION_LOG = "/dev/termination-log"
SPEC_ENV = "ICT_SPEC"
# The command is spelled out rather than left to the image's ENTRYPOINT, so that a custom
# trainer image (one with another entrypoint, or a debugging shell) still runs the trainer.
TRAINER_COMMAND = ["ict"]
TRAINER_ARGS = ["train", "--json", "--spec-env", SPEC_ENV]
EXIT_BAD_INPUT = 2  # the trainer refused the spec or the data: another try cannot help

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_TRAINING = f"{API_GROUP}/training"  # the resource's name, shortened to a label value
LABEL_UID = f"{API_GROUP}/training-uid"  # what the operator finds Jobs and pods by
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
MANAGED_BY = "ict-operator"
ANNOTATION_GENERATION = f"{API_GROUP}/spec-generation"

MAX_NAME = 63  # Job names become the job-name label of their pods


def short_name(name: str, suffix: str = "") -> str:
    """A DNS label of at most 63 characters, the same for the same name.

    Names that fit keep their spelling; longer ones are cut and end in a hash of the whole
    name, so two long names that share a beginning still differ.
    """
    base = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-") or "ict"
    if len(base) + len(suffix) <= MAX_NAME and base == name:
        return base + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    keep = MAX_NAME - len(suffix) - len(digest) - 1
    return f"{base[:keep].rstrip('-')}-{digest}{suffix}"


def job_name(resource_name: str) -> str:
    return short_name(resource_name, "-train")


def labels_of(resource: dict[str, Any]) -> dict[str, str]:
    meta = resource["metadata"]
    return {
        LABEL_NAME: "ict-trainer",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_INSTANCE: short_name(meta["name"]),
        LABEL_TRAINING: short_name(meta["name"]),
        LABEL_UID: meta["uid"],
    }


def owner_reference(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource["metadata"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_job(
    resource: dict[str, Any], spec: ImageClassifierTrainingSpec, settings: OperatorSettings
) -> dict[str, Any]:
    """The batch/v1 Job that trains `resource`; owned by it, so deleting it deletes the Job."""
    meta = resource["metadata"]
    labels = labels_of(resource)
    job_labels = dict(labels)
    if spec.scheduling.queue_name:
        job_labels[LABEL_QUEUE] = spec.scheduling.queue_name
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.retries.backoff_limit,
        "suspend": spec.suspend,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [EXIT_BAD_INPUT],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {"metadata": {"labels": labels}, "spec": pod_spec(resource, spec, settings)},
    }
    if spec.retries.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.retries.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": job_labels,
            "annotations": {ANNOTATION_GENERATION: str(meta.get("generation", 1))},
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": job_spec,
    }


def pod_spec(
    resource: dict[str, Any], spec: ImageClassifierTrainingSpec, settings: OperatorSettings
) -> dict[str, Any]:
    scheduling = spec.scheduling
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # the Job makes a new pod; podFailurePolicy needs Never
        "automountServiceAccountToken": False,  # the trainer never talks to Kubernetes
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(resource, spec, settings)],
        "volumes": [{"name": "scratch", "emptyDir": _scratch_volume(settings)}],
    }
    if scheduling.node_selector:
        pod["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        pod["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in scheduling.tolerations
        ]
    if scheduling.priority_class_name:
        pod["priorityClassName"] = scheduling.priority_class_name
    return pod


def container(
    resource: dict[str, Any], spec: ImageClassifierTrainingSpec, settings: OperatorSettings
) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.trainer_image_pull_policy,
        "command": list(TRAINER_COMMAND),
        "args": list(TRAINER_ARGS),
        "env": trainer_env(resource, spec),
        "resources": trainer_resources(spec, settings),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }


def trainer_env(resource: dict[str, Any], spec: ImageClassifierTrainingSpec) -> list[dict]:
    """The trainer's environment: its spec, its scratch folders and the bucket's credentials."""
    meta = resource["metadata"]
    manifest = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": resource["spec"],  # as the user wrote it (after API defaults): unchanged
    }
    env = [
        {"name": SPEC_ENV, "value": json.dumps(manifest, sort_keys=True)},
        {"name": "ICT_TERMINATION_MESSAGE_PATH", "value": TERMINATION_LOG},
        {"name": "ICT_CACHE_DIR", "value": f"{SCRATCH}/cache"},
        {"name": "HOME", "value": SCRATCH},
        {"name": "TMPDIR", "value": SCRATCH},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    storage = spec.storage
    if storage.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": storage.endpoint})
    if storage.region:
        env += [
            {"name": "AWS_REGION", "value": storage.region},
            {"name": "AWS_DEFAULT_REGION", "value": storage.region},
        ]
    if storage.credentials_secret:
        env += [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": storage.credentials_secret, "key": key}},
            }
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return env


def trainer_resources(
    spec: ImageClassifierTrainingSpec, settings: OperatorSettings
) -> dict[str, Any]:
    """Requests equal to limits: a training run is steady, and Guaranteed pods are evicted last."""
    wanted = {
        "cpu": spec.resources.cpu or settings.default_cpu,
        "memory": spec.resources.memory or settings.default_memory,
    }
    limits = dict(wanted)
    if spec.resources.gpus:
        limits[settings.gpu_resource] = str(spec.resources.gpus)
    return {"requests": wanted, "limits": limits}


def _scratch_volume(settings: OperatorSettings) -> dict[str, Any]:
    return {"sizeLimit": settings.scratch_size} if settings.scratch_size else {}
