"""Mirrors every running training's Job, pods and trainer log into its status.

One loop for the whole operator (not a kopf daemon per resource: kopf guards daemons with a
finalizer, and a finalizer would keep a resource from being deleted while the operator is
down). Each second it looks at the trainings, Jobs and pods in the operator's in-memory
indexes (no API calls), keeps one `StatusMirror` per running training, follows each trainer's
log in a thread, and patches a status only when it changed: at once for phases and
conditions, at most once per `status_interval` for epoch progress.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ict_operator import kube
from ict_operator.builders import CONTAINER
from ict_operator.observe import (
    CONDITION_TYPES,
    TERMINAL,
    RunState,
    merge_conditions,
    merge_patch,
    milestones,
    observe,
    significant,
    without_empty,
)
from ict_operator.progress import TrainerProgress

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, str], None]  # (type, reason, message)


def progress_from_status(status: dict[str, Any]) -> TrainerProgress:
    """What an earlier operator had already reported: a restart carries on from it."""
    progress = status.get("progress") or {}
    return TrainerProgress(
        stage=progress.get("stage"),
        epoch=progress.get("epoch"),
        epochs=progress.get("epochs"),
        latest=dict(status.get("latestMetrics") or {}),
        best=dict(status.get("bestMetrics") or {}),
        cache_hit=status.get("cacheHit"),
    )


@dataclass
class LogFollower:
    """Feeds the newest started pod's log into `progress`, one pod at a time, in a thread."""

    namespace: str
    progress: TrainerProgress
    pod: str | None = None
    _stream: kube.LogStream | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self, pod: dict[str, Any] | None) -> None:
        if pod is None or not _started(pod):
            return
        name = pod["metadata"]["name"]
        if name == self.pod:
            return
        self.close()
        self.pod = name
        self._thread = threading.Thread(target=self._pump, args=(name,), daemon=True)
        self._thread.start()

    def _pump(self, pod: str) -> None:
        try:
            stream = kube.LogStream(self.namespace, pod, CONTAINER)
        except Exception as exc:  # the pod went away, or no log yet: the next pod is followed
            log.debug("cannot read the log of %s/%s: %s", self.namespace, pod, exc)
            return
        with self._lock:
            self._stream = stream
        for line in stream.lines():
            with self._lock:
                self.progress.feed(line)

    def snapshot(self) -> TrainerProgress:
        with self._lock:
            return TrainerProgress(**{k: _copy(v) for k, v in vars(self.progress).items()})

    def close(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


@dataclass
class StatusMirror:
    namespace: str
    name: str
    generation: int | None
    output_uri: str
    status: dict[str, Any]  # what the resource's status says now
    interval: float
    emit: EventSink
    follower: LogFollower = field(init=False)
    _last_patch: float = 0.0

    def __post_init__(self) -> None:
        self.follower = LogFollower(self.namespace, progress_from_status(self.status))

    def step(
        self,
        job: dict[str, Any] | None,
        pods: list[dict[str, Any]],
        suspend: bool,
        now: str,
        stored: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One look at the run; patches the status when it is due. Returns the status.

        `stored` is the status as the API server last reported it: conditions that others
        wrote there (SpecChanged) are kept, never overwritten by this mirror's older copy.
        """
        if stored:
            self.status["conditions"] = adopt_foreign_conditions(
                self.status.get("conditions") or [], stored.get("conditions") or []
            )
        if job is None and self.status.get("jobName"):
            # The index can lag behind a Job created a moment ago: ask before calling it gone.
            job = kube.read_job(self.namespace, self.status["jobName"])
        self.follower.follow(_newest_started(pods))
        state = RunState(job, pods, self.follower.snapshot(), suspend, self.output_uri)
        new = observe(state)
        new["conditions"] = merge_conditions(
            self.status.get("conditions") or [], new["conditions"], now, self.generation
        )
        new["observedGeneration"] = self.generation
        new, known = _comparable(new), _comparable(self.status)
        urgent = significant(known, new)
        due = time.monotonic() - self._last_patch >= self.interval
        patch = merge_patch(known, new)
        if patch and (urgent or due):
            kube.patch_status(self.namespace, self.name, patch)
            for event in milestones(known, new):
                try:
                    self.emit(*event)
                except Exception as exc:  # an Event is worth a warning, not a lost status
                    log.warning("event %s on %s not posted: %s", event[1], self.name, exc)
            self.status = new
            self._last_patch = time.monotonic()
        return self.status

    @property
    def finished(self) -> bool:
        return self.status.get("phase") in TERMINAL

    def close(self) -> None:
        self.follower.close()


@dataclass(frozen=True)
class Training:
    """What the loop knows of one resource: a snapshot from the operator's indexes."""

    body: dict[str, Any]  # apiVersion, kind, metadata, spec, status
    job: dict[str, Any] | None
    pods: list[dict[str, Any]]

    @property
    def uid(self) -> str:
        return self.body["metadata"]["uid"]

    @property
    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}


def mirror_for(training: Training, interval: float, emit_for) -> StatusMirror:
    meta, spec = training.body["metadata"], training.body.get("spec") or {}
    return StatusMirror(
        namespace=meta["namespace"],
        name=meta["name"],
        generation=meta.get("generation"),
        output_uri=(spec.get("output") or {}).get("uri", ""),
        status=dict(training.status),
        interval=interval,
        emit=emit_for(training.body),
    )


async def mirror_trainings(
    look: Callable[[], list[Training]],
    interval: float,
    emit_for: Callable[[dict[str, Any]], EventSink],
    now: Callable[[], str],
    period: float = 1.0,
) -> None:
    """Steps a mirror for every training that has a Job and has not ended, forever."""
    mirrors: dict[str, StatusMirror] = {}
    try:
        while True:
            running = [t for t in look() if _running(t, mirrors)]
            for training in running:
                if training.uid not in mirrors:
                    mirrors[training.uid] = mirror_for(training, interval, emit_for)
            outcomes = await asyncio.gather(
                *(_step(mirrors[t.uid], t, now()) for t in running), return_exceptions=True
            )
            for training, outcome in zip(running, outcomes, strict=True):
                if isinstance(outcome, Exception):  # the next look tries again
                    log.warning("status of %s: %s", training.body["metadata"]["name"], outcome)
            current = {t.uid for t in running}
            for uid in [u for u, m in mirrors.items() if u not in current or m.finished]:
                mirrors.pop(uid).close()
            await asyncio.sleep(period)
    finally:
        for mirror in mirrors.values():
            mirror.close()


def _running(training: Training, mirrors: dict[str, StatusMirror]) -> bool:
    """A training with a Job that has not ended (or whose end this loop has yet to write)."""
    status = training.status
    if not status.get("jobName"):
        return False
    return training.uid in mirrors or status.get("phase") not in TERMINAL


async def _step(mirror: StatusMirror, training: Training, now: str) -> None:
    meta, spec = training.body["metadata"], training.body.get("spec") or {}
    mirror.generation = meta.get("generation")
    suspend = bool(spec.get("suspend"))
    await asyncio.to_thread(mirror.step, training.job, training.pods, suspend, now, training.status)


def adopt_foreign_conditions(
    own: list[dict[str, Any]], stored: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Own conditions, plus the stored ones of types the status mapping does not write."""
    mapped = {kind.value for kind in CONDITION_TYPES}
    foreign = [c for c in stored if c.get("type") not in mapped]
    return [c for c in own if c.get("type") in mapped] + foreign


def _started(pod: dict[str, Any]) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def _newest_started(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    started = [p for p in pods if _started(p)]
    return max(started, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    """Status without kopf's field and without empty values, at every level.

    The API server fills unset status fields with the CRD's defaults (empty maps, 0) and a
    merge patch's null deletes a key: comparing the stored and the computed status as they
    are would see a difference in every look and patch forever.
    """
    return {k: v for k, v in without_empty(status).items() if k != "kopf"}


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value
