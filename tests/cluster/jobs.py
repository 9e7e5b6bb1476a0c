"""The job controller: batch/v1 Jobs get Pods and a status the way Kubernetes writes it.

NonIndexed jobs only. Counts active/ready/succeeded/failed (container restarts under
restartPolicy OnFailure count as failures, as for the real backoff limit); replaces failed
pods after a doubling back-off (NodeSettings.backoff_s, 10 s in Kubernetes) up to backoffLimit,
then FailureTarget + Failed/BackoffLimitExceeded; activeDeadlineSeconds gives
Failed/DeadlineExceeded; completions reached gives SuccessCriteriaMet + Complete. `suspend`
deletes the active pods (their processes are killed) and sets Suspended=True; resuming sets it
False/JobResumed and starts new pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import secrets
import time
from dataclasses import dataclass, field

from tests.cluster.node import NodeSettings
from tests.cluster.recorder import record_event
from tests.cluster.store import ApiError, Change, Store, now_iso

TICK_S = 0.25  # deadlines and back-offs are checked at least this often


def _time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _set_condition(status: dict, type_: str, value: str, reason: str, message: str) -> None:
    conditions = status.setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == type_:
            if (condition["status"], condition.get("reason")) != (value, reason):
                condition.update(status=value, reason=reason, message=message,
                                 lastProbeTime=now_iso(), lastTransitionTime=now_iso())  # fmt: skip
            return
    conditions.append(
        {"type": type_, "status": value, "reason": reason, "message": message,
         "lastProbeTime": now_iso(), "lastTransitionTime": now_iso()}
    )  # fmt: skip


def _is(status: dict, type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in status.get("conditions", []))


@dataclass
class Decision:
    """What one reconciliation of a Job does (pure result of `decide`)."""

    status: dict
    create: int = 0
    delete: list[str] = field(default_factory=list)
    event: tuple[str, str, str] | None = None  # (type, reason, message)


def _failures(pods: list[dict]) -> tuple[int, str | None]:
    """Failed pods plus container restarts, and when the last failure ended."""
    failed, last = 0, None
    for pod in pods:
        for container in pod.get("status", {}).get("containerStatuses", []):
            failed += container.get("restartCount", 0)
            ended = container.get("lastState", {}).get("terminated", {}).get("finishedAt")
            last = max(last or "", ended or "") or None
        if pod.get("status", {}).get("phase") == "Failed":
            failed += 1
            for container in pod["status"].get("containerStatuses", []):
                ended = container.get("state", {}).get("terminated", {}).get("finishedAt")
                last = max(last or "", ended or "") or None
    return failed, last


def decide(job: dict, pods: list[dict], now: datetime.datetime, backoff_s: float) -> Decision:
    spec = job["spec"]
    status = copy.deepcopy(job.get("status") or {})
    active = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
    succeeded = sum(p["status"].get("phase") == "Succeeded" for p in pods)
    failed, last_failure = _failures(pods)
    ready = sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
        for p in active
    )
    status.update(
        active=len(active), ready=ready, succeeded=succeeded, failed=failed, terminating=0
    )
    status.setdefault("uncountedTerminatedPods", {})
    decision = Decision(status)
    if _is(status, "Complete") or _is(status, "Failed"):
        decision.delete = [p["metadata"]["name"] for p in active] if _is(status, "Failed") else []
        return decision
    if spec.get("suspend"):
        if not _is(status, "Suspended"):
            decision.event = ("Normal", "Suspended", "Job suspended")
        _set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended")
        status.pop("startTime", None)
        status.update(active=0, ready=0)
        decision.delete = [p["metadata"]["name"] for p in active]
        return decision
    if _is(status, "Suspended"):
        _set_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
        decision.event = ("Normal", "Resumed", "Job resumed")
    status.setdefault("startTime", now_iso())
    deadline = spec.get("activeDeadlineSeconds")
    failure = None
    if failed > spec.get("backoffLimit", 6):
        failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    elif deadline is not None and (now - _time(status["startTime"])).total_seconds() >= deadline:
        failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
    if failure is not None:
        _set_condition(status, "FailureTarget", "True", *failure)
        _set_condition(status, "Failed", "True", *failure)
        status.update(active=0, ready=0)
        decision.delete = [p["metadata"]["name"] for p in active]
        decision.event = ("Warning", *failure)
        return decision
    completions = spec.get("completions", 1)
    if succeeded >= completions:
        message = "Reached expected number of succeeded pods"
        _set_condition(status, "SuccessCriteriaMet", "True", "CompletionsReached", message)
        _set_condition(status, "Complete", "True", "CompletionsReached", message)
        status["completionTime"] = now_iso()
        decision.event = ("Normal", "Completed", "Job completed")
        return decision
    if failed and last_failure:
        wait = min(backoff_s * 2 ** (failed - 1), 10 * backoff_s * 2**5)
        if (now - _time(last_failure)).total_seconds() < wait:
            return decision
    wanted = min(spec.get("parallelism", 1), completions - succeeded)
    decision.create = max(wanted - len(active), 0)
    return decision


def pod_for(job: dict) -> dict:
    """A new Pod from the Job's template, owned by the Job."""
    meta, template = job["metadata"], job["spec"]["template"]
    suffix = "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
    return {
        "metadata": {
            **copy.deepcopy(template.get("metadata") or {}),
            "name": f"{meta['name']}-{suffix}",
            "namespace": meta["namespace"],
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def _owners(obj: dict) -> set[str]:
    return {ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or []}


class JobController:
    def __init__(self, store: Store, settings: NodeSettings) -> None:
        self.store, self.settings = store, settings
        self.jobs, self.pods = store.info("batch", "jobs"), store.info("", "pods")
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()  # uids of the Jobs changed since the last pass
        store.listeners.append(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.info.key == ("batch", "jobs"):
            self._dirty.add(change.obj["metadata"]["uid"])
        elif change.info.key == ("", "pods"):
            self._dirty.update(_owners(change.obj))
        else:
            return
        self._wake.set()

    async def run(self) -> None:
        """Reconciles the Jobs a change touched at once, and every Job each TICK_S: one pass
        costs O(jobs + pods), so that a few hundred Jobs do not saturate the cluster's loop."""
        last_full = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            full = time.monotonic() - last_full >= TICK_S
            if full:
                last_full = time.monotonic()
            self._pass(None if full else dirty)

    def _pass(self, only: set[str] | None) -> None:
        """Reconciles the Jobs whose uids are in `only` (every Job when None)."""
        jobs = self.store.list(
            self.jobs, None, lambda j: only is None or j["metadata"]["uid"] in only
        )
        uids = {job["metadata"]["uid"] for job in jobs}
        pods: dict[str, list[dict]] = {uid: [] for uid in uids}
        for pod in self.store.list(self.pods, None, lambda p: bool(uids & _owners(p))):
            for uid in uids & _owners(pod):
                pods[uid].append(pod)
        for job in jobs:
            with contextlib.suppress(ApiError):  # deleted meanwhile
                self.reconcile(job, pods[job["metadata"]["uid"]])

    def reconcile(self, job: dict, pods: list[dict]) -> None:
        """One Job, given its pods: create or delete pods, write its status."""
        namespace = job["metadata"]["namespace"]
        now = datetime.datetime.now(datetime.UTC)
        decision = decide(job, pods, now, self.settings.backoff_s)
        for name in decision.delete:
            with contextlib.suppress(ApiError):
                self.store.delete(self.pods, namespace, name)
        for _ in range(decision.create):
            pod = self.store.create(self.pods, namespace, pod_for(job))
            record_event(
                self.store,
                job,
                "SuccessfulCreate",
                f"Created pod: {pod['metadata']['name']}",
                source="job-controller",
            )
        if decision.event is not None:
            type_, reason, message = decision.event
            record_event(self.store, job, reason, message, type_, "job-controller")
        if decision.status != job.get("status"):  # most passes change nothing
            self.store.update(
                self.jobs, namespace, job["metadata"]["name"],
                lambda j: {**j, "status": decision.status}, "status",
            )  # fmt: skip
