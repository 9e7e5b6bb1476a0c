"""Job, pods and trainer progress -> the resource's status. Pure: no I/O, no clock.

The rules are an ordered table: the first that matches a run's state names its phase, its
reason and the message a user reads in `kubectl get ict` / `kubectl describe ict`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ict_api.status import ConditionType, Phase, Reason
from ict_operator.builders import CONTAINER, LABEL_QUEUE
from ict_operator.progress import TrainerProgress, numbers

IMAGE_PULL_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_WAITING = {"CreateContainerConfigError", "CreateContainerError"}
TERMINAL = {Phase.SUCCEEDED.value, Phase.FAILED.value}
ARTIFACT_FILES = {"model": "model.keras", "metrics": "metrics.json", "report": "index.html"}


@dataclass(frozen=True)
class RunState:
    """Everything the status is computed from."""

    job: dict[str, Any] | None
    pods: list[dict[str, Any]]
    progress: TrainerProgress
    suspend: bool  # spec.suspend as the user wants it
    output_uri: str

    @property
    def current_pod(self) -> dict[str, Any] | None:
        live = [p for p in self.pods if _phase(p) in ("Pending", "Running")]
        return _newest(live)

    @property
    def last_failed_pod(self) -> dict[str, Any] | None:
        return _newest([p for p in self.pods if _phase(p) == "Failed"])

    @property
    def succeeded_pod(self) -> dict[str, Any] | None:
        return _newest([p for p in self.pods if _phase(p) == "Succeeded"])


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: Reason
    message: str
    extra: dict[str, Any] = field(default_factory=dict)  # status fields known only here


Rule = tuple[Callable[[RunState], bool], Callable[[RunState], Verdict]]


def observe(state: RunState) -> dict[str, Any]:
    """The status fields (wire names) for this state, conditions without timestamps."""
    verdict = next(build(state) for matches, build in RULES if matches(state))
    progress = state.progress
    job_status = (state.job or {}).get("status") or {}
    status: dict[str, Any] = {
        "phase": verdict.phase.value,
        "message": verdict.message,
        "conditions": conditions_for(verdict),
        "epoch": progress.epoch_text,
        "progress": {"stage": progress.stage, "epoch": progress.epoch, "epochs": progress.epochs},
        "latestMetrics": dict(progress.latest),
        "bestMetrics": dict(progress.best),
        "cacheHit": progress.cache_hit,
        "restarts": int(job_status.get("failed") or 0),
        "startTime": job_status.get("startTime"),
        "completionTime": job_status.get("completionTime"),
        "jobName": (state.job or {}).get("metadata", {}).get("name"),
    }
    status.update(verdict.extra)
    return status


# --- the rules -------------------------------------------------------------------------------


def _job_condition(state: RunState, kind: str) -> dict[str, Any] | None:
    for condition in ((state.job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _missing(state: RunState) -> Verdict:
    return Verdict(
        Phase.FAILED,
        Reason.JOB_MISSING,
        "the trainer Job was deleted before it finished; delete this resource and apply it "
        "again to train (completed epochs in the output's checkpoints/ are resumed)",
    )


def _succeeded(state: RunState) -> Verdict:
    summary = termination_summary(state.succeeded_pod) or state.progress.summary or {}
    final = numbers(summary.get("final")) or dict(state.progress.latest)
    best = numbers(summary.get("best")) or dict(state.progress.best)
    artifacts = {"output": state.output_uri}
    artifacts.update(
        {key: f"{state.output_uri.rstrip('/')}/{name}" for key, name in ARTIFACT_FILES.items()}
    )
    accuracy = final.get("val_accuracy")
    shown = f"val_accuracy {accuracy:.3f}; " if accuracy is not None else ""
    extra: dict[str, Any] = {"artifacts": artifacts, "latestMetrics": final}
    if best:
        extra["bestMetrics"] = best
    if isinstance(summary.get("cacheHit"), bool):
        extra["cacheHit"] = summary["cacheHit"]
    # An output that already held this training is reported with that training's figures.
    done = "up to date, nothing to train" if summary.get("upToDate") is True else "trained"
    return Verdict(
        Phase.SUCCEEDED, Reason.SUCCEEDED, f"{done}: {shown}report at {artifacts['report']}", extra
    )


def _failed(state: RunState) -> Verdict:
    cause = _job_condition(state, "Failed") or {}
    pod = state.last_failed_pod
    terminated = _terminated(pod)
    trainer_says = _trainer_message(terminated)
    if cause.get("reason") == "DeadlineExceeded":
        return Verdict(
            Phase.FAILED,
            Reason.DEADLINE_EXCEEDED,
            "the run took longer than spec.retries.activeDeadlineSeconds; raise it, or resume "
            "by applying the resource again (checkpoints are kept)",
        )
    if terminated.get("reason") == "OOMKilled":
        return Verdict(
            Phase.FAILED,
            Reason.OOM_KILLED,
            "the trainer ran out of memory; raise spec.resources.memory or lower "
            "spec.training.batchSize or spec.model.imageSize",
        )
    exit_code = terminated.get("exitCode")
    detail = trainer_says or cause.get("message") or "no message"
    return Verdict(
        Phase.FAILED,
        Reason.TRAINER_FAILED,
        f"trainer failed (exit code {exit_code}): {detail}",
    )


def _suspended(state: RunState) -> Verdict:
    if state.suspend:
        return Verdict(
            Phase.SUSPENDED,
            Reason.SUSPENDED,
            "suspended: no pod runs; set spec.suspend to false to resume from checkpoints",
        )
    labels = ((state.job or {}).get("metadata") or {}).get("labels") or {}
    queue = labels.get(LABEL_QUEUE)
    if queue:
        return Verdict(
            Phase.PENDING, Reason.QUEUED, f"waiting for Kueue queue {queue!r} to admit the Job"
        )
    return Verdict(Phase.PENDING, Reason.RESUMED, "resuming: waiting for the Job to start a pod")


def _waiting_reason(state: RunState) -> tuple[str, str]:
    pod = state.current_pod or {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting:
            return waiting.get("reason") or "", waiting.get("message") or ""
    return "", ""


def _image_pull(state: RunState) -> Verdict:
    _, message = _waiting_reason(state)
    image = _container(state.current_pod).get("image")
    return Verdict(
        Phase.PENDING,
        Reason.IMAGE_PULL_FAILED,
        f"cannot pull the trainer image {image!r}: {message or 'no details'}; check the "
        "operator's trainer image setting and the node's registry access",
    )


def _config_error(state: RunState) -> Verdict:
    _, message = _waiting_reason(state)
    return Verdict(
        Phase.PENDING,
        Reason.CONFIG_ERROR,
        f"the trainer pod cannot start: {message or 'container configuration error'}; create "
        "the Secret named by spec.storage.credentialsSecret in this namespace with the keys "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    )


def _unschedulable_condition(state: RunState) -> dict[str, Any] | None:
    pod = state.current_pod or {}
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return condition
    return None


def _unschedulable(state: RunState) -> Verdict:
    message = (_unschedulable_condition(state) or {}).get("message") or "no node fits the pod"
    return Verdict(
        Phase.PENDING,
        Reason.UNSCHEDULABLE,
        f"no node can run the trainer pod: {message}; lower spec.resources or fix "
        "spec.scheduling, or add capacity",
    )


def _running(state: RunState) -> Verdict:
    progress = state.progress
    parts = []
    if progress.stage:
        parts.append(
            f"{progress.stage}" + (f" epoch {progress.epoch_text}" if progress.epoch_text else "")
        )
    if "val_accuracy" in progress.latest:
        parts.append(f"val_accuracy {progress.latest['val_accuracy']:.3f}")
    restarts = int(((state.job or {}).get("status") or {}).get("failed") or 0)
    if restarts:
        parts.append(f"resumed after {restarts} failed pod(s)")
    return Verdict(Phase.RUNNING, Reason.TRAINING, "training: " + (", ".join(parts) or "starting"))


def _pending(state: RunState) -> Verdict:
    pod = state.current_pod
    failed = state.last_failed_pod
    if pod is None and failed is not None:
        said = _trainer_message(_terminated(failed))
        return Verdict(
            Phase.PENDING,
            Reason.RETRYING,
            f"a trainer pod failed ({said or 'no message'}); the Job starts another",
        )
    if pod is None:
        return Verdict(Phase.PENDING, Reason.JOB_CREATED, "waiting for the trainer pod")
    return Verdict(Phase.PENDING, Reason.POD_PENDING, "the trainer pod is starting")


RULES: list[Rule] = [
    (lambda s: s.job is None, _missing),
    (lambda s: _job_condition(s, "Complete") is not None, _succeeded),
    (lambda s: _job_condition(s, "Failed") is not None, _failed),
    (lambda s: bool(((s.job or {}).get("spec") or {}).get("suspend")), _suspended),
    (lambda s: _waiting_reason(s)[0] in IMAGE_PULL_WAITING, _image_pull),
    (lambda s: _waiting_reason(s)[0] in CONFIG_WAITING, _config_error),
    (lambda s: _unschedulable_condition(s) is not None, _unschedulable),
    (lambda s: _phase(s.current_pod or {}) == "Running", _running),
    (lambda s: True, _pending),
]


# --- conditions ------------------------------------------------------------------------------

# phase -> (Ready, Progressing, Complete, Failed, Suspended) as True/False
CONDITION_TABLE: dict[Phase, tuple[bool, bool, bool, bool, bool]] = {
    Phase.PENDING: (True, True, False, False, False),
    Phase.RUNNING: (True, True, False, False, False),
    Phase.SUCCEEDED: (True, False, True, False, False),
    Phase.FAILED: (True, False, False, True, False),
    Phase.SUSPENDED: (True, False, False, False, True),
}
STUCK = {Reason.UNSCHEDULABLE, Reason.IMAGE_PULL_FAILED, Reason.CONFIG_ERROR}
CONDITION_TYPES = (
    ConditionType.READY,
    ConditionType.PROGRESSING,
    ConditionType.COMPLETE,
    ConditionType.FAILED,
    ConditionType.SUSPENDED,
)


def conditions_for(verdict: Verdict) -> list[dict[str, Any]]:
    flags = list(CONDITION_TABLE[verdict.phase])
    if verdict.reason in STUCK:
        flags[1] = False  # waiting on the user or the cluster, not progressing
    if verdict.reason is Reason.JOB_MISSING:
        flags[0] = False
    ready_reason = Reason.JOB_MISSING if not flags[0] else Reason.JOB_CREATED
    return [
        {
            "type": kind.value,
            "status": "True" if flag else "False",
            "reason": (ready_reason if kind is ConditionType.READY else verdict.reason).value,
            "message": verdict.message
            if kind is not ConditionType.READY or not flag
            else "the spec is valid and the trainer Job exists",
        }
        for kind, flag in zip(CONDITION_TYPES, flags, strict=True)
    ]


def invalid_spec_status(message: str) -> dict[str, Any]:
    """The status of a resource whose spec was refused: no Job is made for it."""
    return {
        "phase": Phase.FAILED.value,
        "message": message.splitlines()[0] if message else "invalid spec",
        "conditions": [
            {
                "type": ConditionType.READY.value,
                "status": "False",
                "reason": Reason.INVALID_SPEC.value,
                "message": message,
            },
            {
                "type": ConditionType.FAILED.value,
                "status": "True",
                "reason": Reason.INVALID_SPEC.value,
                "message": message,
            },
        ],
    }


def merge_conditions(
    old: list[dict[str, Any]], new: list[dict[str, Any]], now: str, generation: int | None
) -> list[dict[str, Any]]:
    """New conditions stamped; lastTransitionTime kept while a condition's status holds.

    Condition types the new list does not mention (e.g. SpecChanged) are kept as they were.
    """
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for condition in new:
        before = previous.pop(condition["type"], None)
        unchanged = before is not None and before.get("status") == condition["status"]
        merged.append(
            {
                **condition,
                "lastTransitionTime": before.get("lastTransitionTime") if unchanged else now,
                "observedGeneration": generation,
            }
        )
    return merged + list(previous.values())


# --- events ----------------------------------------------------------------------------------


# reason reached -> (event type, event reason); the event's message is the status message
REASON_EVENTS: dict[str, tuple[str, str]] = {
    Reason.TRAINING.value: ("Normal", "TrainingStarted"),
    Reason.SUCCEEDED.value: ("Normal", "Succeeded"),
    Reason.SUSPENDED.value: ("Normal", "Suspended"),
    Reason.RETRYING.value: ("Warning", "PodFailed"),
    Reason.TRAINER_FAILED.value: ("Warning", "TrainerFailed"),
    Reason.OOM_KILLED.value: ("Warning", "OOMKilled"),
    Reason.DEADLINE_EXCEEDED.value: ("Warning", "DeadlineExceeded"),
    Reason.JOB_MISSING.value: ("Warning", "JobMissing"),
    Reason.UNSCHEDULABLE.value: ("Warning", "Unschedulable"),
    Reason.IMAGE_PULL_FAILED.value: ("Warning", "ImagePullFailed"),
    Reason.CONFIG_ERROR.value: ("Warning", "ContainerConfigError"),
}
# Training reached from these reasons continues from checkpoints rather than starting.
RESUMING_FROM = {
    Reason.RETRYING.value,
    Reason.SUSPENDED.value,
    Reason.RESUMED.value,
}


def milestones(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Kubernetes Events that a status change deserves."""
    events = []
    reason, before = _reason_of(new), _reason_of(old)
    if reason != before and reason in REASON_EVENTS:
        kind, name = REASON_EVENTS[reason]
        if reason == Reason.TRAINING.value and (before in RESUMING_FROM or new.get("restarts")):
            name = "Resumed"
        events.append((kind, name, new.get("message") or ""))
    if new.get("cacheHit") is True and old.get("cacheHit") is not True:
        events.append(("Normal", "FeaturesCacheHit", "bottleneck features came from the cache"))
    return events


def _reason_of(status: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == ConditionType.PROGRESSING.value:
            return condition.get("reason", "")
    return ""


# --- pod details -----------------------------------------------------------------------------


def _phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def _container(pod: dict[str, Any] | None) -> dict[str, Any]:
    for candidate in ((pod or {}).get("spec") or {}).get("containers") or []:
        if candidate.get("name") == CONTAINER:
            return candidate
    return {}


def _terminated(pod: dict[str, Any] | None) -> dict[str, Any]:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return (status.get("state") or {}).get("terminated") or {}
    return {}


def termination_summary(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    """The trainer's JSON summary from its termination message, if it wrote one."""
    message = _terminated(pod).get("message")
    if not message:
        return None
    try:
        summary = json.loads(message)
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None


def _trainer_message(terminated: dict[str, Any]) -> str | None:
    """What the trainer said when it ended: its JSON summary's message, or the log's tail."""
    message = terminated.get("message")
    if not message:
        return None
    try:
        summary = json.loads(message)
    except ValueError:
        return message.strip().splitlines()[-1][:500]
    return str(summary.get("message")) if isinstance(summary, dict) else None


# --- patches ---------------------------------------------------------------------------------

# Fields that change every epoch: sent at most once per status interval.
PROGRESS_FIELDS = {"epoch", "progress", "latestMetrics", "bestMetrics", "message"}


def significant(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a change is more than progress: phase, a condition's status or reason, ..."""

    def shape(status: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in status.items() if k not in PROGRESS_FIELDS | {"conditions"}}
        kept["conditions"] = sorted(
            (c.get("type"), c.get("status"), c.get("reason"))
            for c in status.get("conditions") or []
        )
        return kept

    return shape(old) != shape(new)


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`; {} when they are equal."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch


def without_empty(value: Any) -> Any:
    """`value` with None, {} and [] left out of every mapping, at every level (0 and False
    stay: they are values)."""
    if not isinstance(value, dict):
        return value
    kept = {key: without_empty(item) for key, item in value.items()}
    return {
        key: item for key, item in kept.items() if item is not None and item != {} and item != []
    }
