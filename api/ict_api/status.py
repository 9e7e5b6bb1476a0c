"""The ImageClassifierTraining status: what the operator reports back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from ict_api.spec import SpecModel


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class ConditionType(StrEnum):
    READY = "Ready"  # the spec was accepted and a Job exists
    PROGRESSING = "Progressing"  # the trainer is running
    COMPLETE = "Complete"  # artifacts are in the output
    FAILED = "Failed"


class Reason(StrEnum):
    """Why a condition has its status; one CamelCase word, as Kubernetes wants."""

    INVALID_SPEC = "InvalidSpec"  # the spec failed validation; no Job was created
    JOB_CREATED = "JobCreated"  # the trainer Job was created and waits for a pod
    TRAINING = "Training"  # the trainer reports epochs
    SUCCEEDED = "Succeeded"  # the trainer finished and wrote its artifacts
    TRAINER_FAILED = "TrainerFailed"  # the trainer exited non-zero past the backoff limit
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # retries.activeDeadlineSeconds ran out
    SUSPENDED = "Suspended"  # spec.suspend is true; no pod runs


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
    stage: str | None = Field(default=None, description="features, head, finetune or train.")
    epoch: int | None = Field(default=None, description="Last completed epoch of the stage.")
    epochs: int | None = Field(default=None, description="Epochs of the stage.")


class Artifacts(SpecModel):
    model: str | None = Field(default=None, description="URI of model.keras.")
    metrics: str | None = Field(default=None, description="URI of metrics.json.")
    report: str | None = Field(default=None, description="URI of the HTML report.")


class ImageClassifierTrainingStatus(SpecModel):
    phase: Phase = Field(default=Phase.PENDING, description="Where the run is.")
    conditions: list[Condition] = Field(default_factory=list, description="Detailed state.")
    progress: Progress = Field(default_factory=Progress, description="Stage and epoch.")
    latest_metrics: dict[str, float] = Field(
        default_factory=dict, description="Metrics of the last epoch."
    )
    best_metrics: dict[str, float] = Field(
        default_factory=dict, description="Best validation metrics so far."
    )
    cache_hit: bool | None = Field(
        default=None, description="Whether bottleneck features came from the cache."
    )
    artifacts: Artifacts = Field(default_factory=Artifacts, description="Result locations.")
    start_time: datetime | None = Field(default=None, description="When the trainer started.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    job_name: str | None = Field(default=None, description="Name of the trainer Job.")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the status reflects."
    )
