"""kopf handlers: validate, build, create, and mirror. Each is a few lines over pure code."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import logging
from typing import Any

import kopf

from ict_api import SpecError
from ict_api.spec import API_GROUP, API_VERSION, PLURAL
from ict_api.status import ConditionType, Reason
from ict_operator import kube
from ict_operator.builders import LABEL_MANAGED_BY, LABEL_UID, MANAGED_BY, build_job
from ict_operator.mirror import Training, mirror_trainings
from ict_operator.observe import TERMINAL, invalid_spec_status, merge_conditions
from ict_operator.validation import validate_resource

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
OURS = {LABEL_MANAGED_BY: MANAGED_BY}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Handler progress in annotations: the status belongs to the user-facing fields alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Only our own Jobs and pods are listed and watched, filtered by the API server.
    for resource in ("batch/jobs", "v1/pods"):
        settings.watching.label_selectors[resource] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    kube.connect()


# The indexes are async: kopf runs sync handlers in its thread pool, where a copy of a dict
# waited behind handlers blocked on the API server, and mirrors found no Job in the index yet.
@kopf.index("batch", "v1", "jobs", labels=OURS)
async def jobs_by_uid(body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[str, Any]:
    return {labels.get(LABEL_UID): copy.deepcopy(dict(body))}


@kopf.index("v1", "pods", labels=OURS)
async def pods_by_uid(body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[str, Any]:
    return {labels.get(LABEL_UID): copy.deepcopy(dict(body))}


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
def ensure_job(
    body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, jobs_by_uid: kopf.Index, **_: Any
) -> None:
    status = dict(body.get("status") or {})
    generation = body.metadata.get("generation")
    if status.get("phase") in TERMINAL and status.get("observedGeneration") == generation:
        return  # finished (or refused) for this spec already
    if status.get("jobName") and jobs_by_uid.get(body.metadata.uid):
        return  # a restarted operator: the index (filled before handlers run) holds the Job
    try:
        spec = validate_resource(body)
    except SpecError as exc:
        refuse(body, patch, str(exc), generation)
        return
    job = build_job(body, spec, memo.settings)
    try:
        job, created = kube.ensure_job(job)
    except kube.JobConflict as exc:
        raise kopf.TemporaryError(str(exc), delay=10) from exc
    if created:
        kopf.info(body, reason=Reason.JOB_CREATED.value, message=f"created Job {job_name(job)}")
    if not status.get("jobName"):
        patch.status["phase"] = "Suspended" if spec.suspend else "Pending"
        patch.status["jobName"] = job_name(job)
        patch.status["message"] = "waiting for the trainer pod"
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = merge_conditions(
            status.get("conditions") or [],
            [_condition(ConditionType.READY, "True", Reason.JOB_CREATED, "the trainer Job exists")],
            now(),
            generation,
        )


@kopf.on.update(*RESOURCE, field="spec")
def spec_changed(
    body: kopf.Body, diff: kopf.Diff, memo: kopf.Memo, patch: kopf.Patch, **kwargs: Any
) -> None:
    status = body.get("status") or {}
    if not status.get("jobName"):  # refused before: the edit may have fixed it
        ensure_job(body=body, memo=memo, patch=patch, **kwargs)
        return
    changed = sorted({_path(entry) for entry in diff})
    if "suspend" in changed:
        kube.set_job_suspend(
            body.metadata.namespace, status["jobName"], bool(body.spec.get("suspend"))
        )
    ignored = [path for path in changed if path != "suspend"]
    if ignored:
        message = (
            f"spec.{', spec.'.join(ignored)} changed after the trainer Job was created and "
            "is not applied (only spec.suspend is). To train with the new spec, delete this "
            "resource and apply it again, or apply it under a new name."
        )
        patch.status["conditions"] = merge_conditions(
            status.get("conditions") or [],
            [_condition(ConditionType.SPEC_CHANGED, "True", Reason.SPEC_IMMUTABLE, message)],
            now(),
            body.metadata.get("generation"),
        )
        kopf.warn(body, reason=Reason.SPEC_IMMUTABLE.value, message=message)


@kopf.index(*RESOURCE)
async def trainings_by_uid(body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {body.metadata.uid: copy.deepcopy(dict(body))}


@kopf.on.startup()
async def start_mirroring(
    memo: kopf.Memo,
    trainings_by_uid: kopf.Index,
    jobs_by_uid: kopf.Index,
    pods_by_uid: kopf.Index,
    **_: Any,
) -> None:
    """One loop mirrors every running training (see ict_operator.mirror for why not daemons)."""

    def look() -> list[Training]:
        trainings = []
        for uid, bodies in list(trainings_by_uid.items()):
            jobs = list(jobs_by_uid.get(uid, []))
            pods = list(pods_by_uid.get(uid, []))
            for body in bodies:
                trainings.append(Training(body, jobs[-1] if jobs else None, pods))
        return trainings

    def emit_for(body: dict[str, Any]):
        return lambda kind, reason, message: kube.post_event(body, kind, reason, message)

    memo.mirroring = asyncio.create_task(
        mirror_trainings(look, memo.settings.status_interval, emit_for, now),
        name="status mirror",
    )


@kopf.on.cleanup()
async def stop_mirroring(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "mirroring", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def refuse(body: kopf.Body, patch: kopf.Patch, message: str, generation: int | None) -> None:
    """An invalid spec: phase Failed, reason InvalidSpec, a Warning Event, and no Job."""
    status = invalid_spec_status(message)
    status["conditions"] = merge_conditions(
        (body.get("status") or {}).get("conditions") or [], status["conditions"], now(), generation
    )
    status["observedGeneration"] = generation
    patch.status.update(status)
    kopf.warn(body, reason=Reason.INVALID_SPEC.value, message=message)


def job_name(job: dict[str, Any]) -> str:
    return job["metadata"]["name"]


def _condition(kind: ConditionType, status: str, reason: Reason, message: str) -> dict[str, Any]:
    return {"type": kind.value, "status": status, "reason": reason.value, "message": message}


def _path(entry: Any) -> str:
    """'training.epochs' from a kopf diff entry (op, path, old, new); paths are below spec."""
    path = [str(part) for part in entry[1]]
    if path and path[0] == "spec":
        path = path[1:]
    return ".".join(path) or "spec"
