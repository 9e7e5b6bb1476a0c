"""The ImageClassifierTraining status: what the operator reports back.

The operator writes it; users read it with `kubectl get ict` (printer columns) and
`kubectl describe ict`. Conditions follow the Kubernetes conventions: one entry per type,
`lastTransitionTime` changes only when `status` does, and `reason` is one of `Reason`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from ict_api.spec import SpecModel


class Phase(StrEnum):
    PENDING = "Pending"  # accepted; waiting for a pod to start (scheduling, image pull)
    RUNNING = "Running"  # the trainer pod runs
    SUCCEEDED = "Succeeded"  # the artifacts are in the output
    FAILED = "Failed"  # invalid spec, or the trainer failed past its retries
    SUSPENDED = "Suspended"  # spec.suspend is true: the Job holds no pod


class ConditionType(StrEnum):
    READY = "Ready"  # the spec was accepted and the trainer Job exists
    PROGRESSING = "Progressing"  # a trainer pod is starting or training
    COMPLETE = "Complete"  # the trainer finished and published its artifacts
    FAILED = "Failed"  # the run ended without artifacts
    SUSPENDED = "Suspended"  # the Job is suspended
    SPEC_CHANGED = "SpecChanged"  # the spec was edited after the Job was created


class Reason(StrEnum):
    """Why a condition has its status; one CamelCase word, as Kubernetes wants."""

    INVALID_SPEC = "InvalidSpec"  # the spec failed validation; no Job was created
    JOB_CREATED = "JobCreated"  # the trainer Job exists and waits for its pod
    JOB_MISSING = "JobMissing"  # the trainer Job was deleted by someone else
    POD_PENDING = "PodPending"  # the pod is scheduled and starting
    UNSCHEDULABLE = "Unschedulable"  # no node fits the pod (e.g. no free GPU); scheduler's message
    IMAGE_PULL_FAILED = "ImagePullFailed"  # the trainer image cannot be pulled
    CONFIG_ERROR = "ContainerConfigError"  # a referenced Secret or key is missing
    TRAINING = "Training"  # the trainer runs and reports epochs
    RETRYING = "Retrying"  # a trainer pod failed; the Job starts another within backoffLimit
    SUCCEEDED = "Succeeded"  # the trainer finished and wrote its artifacts
    TRAINER_FAILED = "TrainerFailed"  # the trainer exited non-zero past the backoff limit
    OOM_KILLED = "OOMKilled"  # the trainer ran out of memory (resources.memory) past retries
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # retries.activeDeadlineSeconds ran out
    SUSPENDED = "Suspended"  # spec.suspend is true; no pod runs
    RESUMED = "Resumed"  # spec.suspend went back to false; training continues from checkpoints
    QUEUED = "Queued"  # the Job waits for Kueue to admit it (spec.scheduling.queueName)
    SPEC_IMMUTABLE = "SpecImmutable"  # an edit other than suspend is not applied to a running Job


class Condition(SpecModel):
    type: ConditionType = Field(description="Which aspect this condition describes.")
    status: str = Field(pattern="^(True|False|Unknown)$", description="True, False or Unknown.")
    reason: Reason = Field(description="Machine-readable cause (see Reason).")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this condition was computed from."
    )


class Progress(SpecModel):
    stage: str | None = Field(
        default=None, description="Stage of the trainer: train, features, head or finetune."
    )
    epoch: int | None = Field(default=None, description="Last completed epoch of the stage.")
    epochs: int | None = Field(default=None, description="Epochs of the stage.")


class Artifacts(SpecModel):
    output: str | None = Field(default=None, description="URI of the output folder.")
    model: str | None = Field(default=None, description="URI of model.keras.")
    metrics: str | None = Field(default=None, description="URI of metrics.json.")
    report: str | None = Field(default=None, description="URI of the HTML report (index.html).")


class ImageClassifierTrainingStatus(SpecModel):
    """What the operator reports: phase, conditions, progress, metrics and where results are."""

    phase: Phase = Field(default=Phase.PENDING, description="Where the run is.")
    message: str | None = Field(
        default=None, description="One line on the current state, for people."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Detailed state: one entry per type (Ready, Progressing, Complete, ...).",
        # Server-side apply merges conditions by type, as for built-in resources.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    epoch: str | None = Field(
        default=None,
        description="Completed/total epochs of the current stage, e.g. 7/30 (printer column).",
    )
    progress: Progress = Field(default_factory=Progress, description="Stage and epoch.")
    latest_metrics: dict[str, float] = Field(
        default_factory=dict, description="Metrics of the last completed epoch."
    )
    best_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Metrics of the best epoch so far (chosen by the monitored metric).",
    )
    cache_hit: bool | None = Field(
        default=None, description="Whether bottleneck features came from the cache."
    )
    restarts: int = Field(default=0, description="Trainer pods that failed and were replaced.")
    artifacts: Artifacts = Field(default_factory=Artifacts, description="Result locations.")
    start_time: datetime | None = Field(default=None, description="When the trainer started.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    job_name: str | None = Field(default=None, description="Name of the trainer Job.")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the status reflects."
    )
