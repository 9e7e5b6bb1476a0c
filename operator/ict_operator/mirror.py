"""Mirrors one resource's Job, pods and trainer log into its status, until the run ends.

One `StatusMirror` per resource, driven by a kopf daemon: it reads the Job and pods from the
operator's in-memory indexes (no API calls), follows the trainer's log in a thread, and
patches the status only when it changed: at once for phases and conditions, at most once per
`status_interval` for epoch progress.
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
    TERMINAL,
    RunState,
    merge_conditions,
    merge_patch,
    milestones,
    observe,
    significant,
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
        self, job: dict[str, Any] | None, pods: list[dict[str, Any]], suspend: bool, now: str
    ) -> dict[str, Any]:
        """One look at the run; patches the status when it is due. Returns the status."""
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
        new = {k: v for k, v in new.items() if v is not None}
        urgent = significant(self.status, new)
        due = time.monotonic() - self._last_patch >= self.interval
        patch = merge_patch(_comparable(self.status), _comparable(new))
        if patch and (urgent or due):
            kube.patch_status(self.namespace, self.name, patch)
            for event in milestones(self.status, new):
                self.emit(*event)
            self.status = {**self.status, **new}
            self._last_patch = time.monotonic()
        return self.status

    @property
    def finished(self) -> bool:
        return self.status.get("phase") in TERMINAL

    def close(self) -> None:
        self.follower.close()


async def run_mirror(
    mirror: StatusMirror,
    look: Callable[[], tuple[dict[str, Any] | None, list[dict[str, Any]], bool]],
    stopped: Any,
    now: Callable[[], str],
    period: float = 1.0,
) -> None:
    """Steps the mirror every `period` seconds until the run ends or the daemon is stopped."""
    try:
        while not stopped:
            job, pods, suspend = look()
            await asyncio.to_thread(mirror.step, job, pods, suspend, now())
            if mirror.finished or await stopped.wait(period):
                return
    finally:
        mirror.close()


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
    """Status without fields the operator does not own (kopf's, the user's)."""
    return {k: v for k, v in status.items() if k != "kopf"}


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value
