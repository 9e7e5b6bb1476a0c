"""The scheduler and kubelet of the one fake node: pods become local processes.

For each new pod: schedule it (or PodScheduled=False/Unschedulable with the scheduler's
message, retried when the node or the pods on it change), "pull" its images (ErrImagePull, then
ImagePullBackOff, for images the node cannot pull), configure each container (waiting
CreateContainerConfigError with the kubelet's message until the Secret/ConfigMap appears), run
it (containers.py), and write the pod status the way the kubelet does. A deleted pod's
processes get SIGTERM, then SIGKILL after the grace period (capped by NodeSettings.max_grace_s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster import containers
from tests.cluster.logs import ContainerLog
from tests.cluster.node import NODE_NAME, NodeSettings, unschedulable_reason
from tests.cluster.recorder import record_event
from tests.cluster.store import ApiError, Change, Store, now_iso

RETRY_S = 0.5  # how often a blocked pod (config error, unschedulable) looks again at worst


class PodGone(Exception):
    """The pod was deleted while the kubelet worked on it."""


@dataclass
class PodRun:
    """What the kubelet keeps about one pod."""

    namespace: str
    name: str
    dir: Path
    logs: dict[str, ContainerLog] = field(default_factory=dict)
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    task: asyncio.Task | None = None
    killing: bool = False
    grace_s: float = 0.0  # how long a SIGTERMed process may take before SIGKILL
    warned: set[str] = field(default_factory=set)  # event messages already posted


def _summary(status: dict) -> dict:
    """Phase and conditions from the container states, as the kubelet derives them."""
    states = [s.get("state", {}) for s in status.get("containerStatuses", [])]
    terminated = [s["terminated"] for s in states if "terminated" in s]
    running = all("running" in s for s in states) and bool(states)
    if states and len(terminated) == len(states):
        status["phase"] = "Succeeded" if all(t["exitCode"] == 0 for t in terminated) else "Failed"
    elif any("running" in s for s in states) or terminated:
        status["phase"] = "Running"
    ready = "True" if running else "False"
    by_type = {c["type"]: c for c in status.get("conditions", [])}
    for kind, value in (("Initialized", "True"), ("ContainersReady", ready), ("Ready", ready)):
        if by_type.get(kind, {}).get("status") != value:
            by_type[kind] = {"type": kind, "status": value, "lastTransitionTime": now_iso()}
    status["conditions"] = list(by_type.values())
    for container in status.get("containerStatuses", []):
        container["ready"] = "running" in container.get("state", {})
    return status


class Kubelet:
    def __init__(self, store: Store, settings: NodeSettings, root: Path) -> None:
        self.store, self.settings, self.root = store, settings, root
        self.runs: dict[tuple[str, str], PodRun] = {}
        self._wake = asyncio.Event()
        self.pods = store.info("", "pods")
        store.listeners.append(self._on_change)
        store.create(store.info("", "nodes"), None, settings.node_object())

    # -- wiring ----------------------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        if change.info.key in (("", "secrets"), ("", "configmaps"), ("", "nodes")):
            self.wake()
        if change.info.key != ("", "pods"):
            return
        meta = change.obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if change.type == "ADDED":
            run = PodRun(
                meta["namespace"], meta["name"], self.root / meta["namespace"] / meta["name"]
            )
            self.runs[key] = run
            run.task = asyncio.get_running_loop().create_task(self._run(run))
        elif change.type == "DELETED" and key in self.runs:
            run = self.runs.pop(key)
            if run.task is not None:
                run.task.cancel()
            self.wake()

    def wake(self) -> None:
        """Let blocked pods look again (node settings, Secrets or capacity changed)."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def _sleep(self, seconds: float = RETRY_S) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def update_node(self) -> None:
        node = self.settings.node_object()
        self.store.update(
            self.store.info("", "nodes"),
            None,
            NODE_NAME,
            lambda o: {**o, "status": node["status"]},
            "status",
        )
        self.store.update(
            self.store.info("", "nodes"), None, NODE_NAME,
            lambda o: {**o, "metadata": {**o["metadata"], "labels": node["metadata"]["labels"]}},
        )  # fmt: skip
        self.wake()

    async def stop(self) -> None:
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.runs.clear()

    # -- status writes ---------------------------------------------------------------------
    def _status(self, run: PodRun, change: Callable[[dict], None]) -> dict:
        def apply(pod: dict) -> dict:
            status = pod.setdefault("status", {})
            change(status)
            _summary(status)
            return pod

        try:
            return self.store.update(self.pods, run.namespace, run.name, apply, "status")
        except ApiError as exc:
            raise PodGone(run.name) from exc

    def _container(self, run: PodRun, name: str, **fields: object) -> dict:
        def change(status: dict) -> None:
            for container in status["containerStatuses"]:
                if container["name"] == name:
                    container.update(fields)

        return self._status(run, change)

    def _event(self, run: PodRun, reason: str, message: str, warning: bool = False) -> None:
        if warning and message in run.warned:
            return
        run.warned.add(message)
        pod = self.store.find(self.pods, run.namespace, run.name)
        if pod is not None:
            source = "default-scheduler" if "chedul" in reason else "kubelet"
            record_event(
                self.store, pod, reason, message, "Warning" if warning else "Normal", source
            )

    # -- the pod's life --------------------------------------------------------------------
    async def _run(self, run: PodRun) -> None:
        try:
            pod = await self._schedule(run)
            grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
            run.grace_s = min(grace, self.settings.max_grace_s)
            await self._pull(run, pod)
            specs = pod["spec"].get("containers", [])
            await asyncio.gather(*(self._run_container(run, pod, spec) for spec in specs))
        except PodGone:
            pass
        finally:
            await self._kill(run)

    async def _schedule(self, run: PodRun) -> dict:
        while True:
            pod = self.store.find(self.pods, run.namespace, run.name)
            if pod is None:
                raise PodGone(run.name)
            if pod["spec"].get("nodeName"):
                return pod
            others = [
                p
                for p in self.store.list(self.pods, None)
                if p["spec"].get("nodeName") == NODE_NAME
                and p["status"].get("phase") in ("Pending", "Running")
            ]
            reason = unschedulable_reason(self.settings, pod, others)
            condition = {"type": "PodScheduled", "lastTransitionTime": now_iso()}
            if reason is None:
                break
            condition.update(status="False", reason="Unschedulable", message=reason)
            self._status(run, lambda s, c=condition: s.update(conditions=[c]))
            self._event(run, "FailedScheduling", reason, warning=True)
            await self._sleep(5 * RETRY_S)

        def bind(obj: dict) -> dict:
            obj["spec"]["nodeName"] = NODE_NAME
            return obj

        self.store.update(self.pods, run.namespace, run.name, bind)
        condition.update(status="True")
        waiting = {"waiting": {"reason": "ContainerCreating"}}
        statuses = [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
             "restartCount": 0, "started": False, "state": waiting, "lastState": {}}
            for c in pod["spec"].get("containers", [])
        ]  # fmt: skip
        self._status(
            run,
            lambda s: s.update(
                conditions=[condition], containerStatuses=statuses, hostIP="127.0.0.1",
                podIP="127.0.0.1", startTime=now_iso(),
            ),
        )  # fmt: skip
        self._event(
            run, "Scheduled", f"Successfully assigned {run.namespace}/{run.name} to {NODE_NAME}"
        )
        return self.store.get(self.pods, run.namespace, run.name)

    async def _pull(self, run: PodRun, pod: dict) -> None:
        for spec in pod["spec"].get("containers", []):
            image = spec.get("image", "")
            while not self.settings.image_pullable(image):
                message = (
                    f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to '
                    f'pull and unpack image "{image}": failed to resolve reference "{image}": '
                    "not found"
                )
                self._container(
                    run,
                    spec["name"],
                    state={"waiting": {"reason": "ErrImagePull", "message": message}},
                )
                self._event(run, "Failed", message, warning=True)
                await self._sleep(RETRY_S)
                backoff = f'Back-off pulling image "{image}"'
                self._container(
                    run,
                    spec["name"],
                    state={"waiting": {"reason": "ImagePullBackOff", "message": backoff}},
                )
                await self._sleep(5 * RETRY_S)
            self._event(run, "Pulled", f'Container image "{image}" already present on machine')

    def _lookup(self, kind: str, namespace: str, name: str) -> dict | None:
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        return self.store.find(self.store.info("", plural), namespace, name)

    async def _configure(self, run: PodRun, pod: dict, spec: dict) -> containers.Plan | int:
        """The container's process plan, waiting while its config is missing; or an exit code."""
        while True:
            try:
                return containers.plan(pod, spec, run.dir, self._lookup, self.settings.path_prefix)
            except containers.ConfigError as exc:
                state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                self._container(run, spec["name"], state=state)
                self._event(run, "Failed", f"Error: {exc}", warning=True)
                await self._sleep()
            except FileNotFoundError as exc:
                terminated = {"exitCode": 128, "reason": "StartError", "message": str(exc),
                              "startedAt": now_iso(), "finishedAt": now_iso()}  # fmt: skip
                self._container(run, spec["name"], state={"terminated": terminated})
                return 128

    async def _run_container(self, run: PodRun, pod: dict, spec: dict) -> None:
        name = spec["name"]
        log = run.logs.setdefault(name, ContainerLog(run.dir / "logs" / f"{name}.log"))
        restarts = 0
        while True:
            plan = await self._configure(run, pod, spec)
            if isinstance(plan, int):
                return
            plan.termination_file.write_text("")
            process = await asyncio.create_subprocess_exec(
                *plan.argv, env=plan.env, cwd=plan.cwd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            run.processes[name] = process
            assert process.stdout is not None
            pump = asyncio.create_task(log.pump(process.stdout))
            await log.mark(running=True)
            started = now_iso()
            self._container(run, name, state={"running": {"startedAt": started}}, started=True)
            self._event(run, "Started", f"Started container {name}")
            code = await process.wait()
            await pump
            code = 128 - code if code < 0 else code
            policy = pod["spec"].get("restartPolicy", "Always")
            again = not run.killing and (policy == "Always" or (policy == "OnFailure" and code))
            await log.mark(running=False, finished=not again)
            terminated = self._terminated(run, spec, code, plan, log, started)
            if not again:
                self._container(run, name, state={"terminated": terminated})
                self.wake()
                return
            restarts += 1
            waiting = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container {name}",
                }
            }
            self._container(
                run,
                name,
                state=waiting,
                lastState={"terminated": terminated},
                restartCount=restarts,
            )
            await asyncio.sleep(self.settings.backoff_s)

    def _terminated(self, run: PodRun, spec: dict, code: int, plan: containers.Plan,
                    log: ContainerLog, started: str) -> dict:  # fmt: skip
        if code == 0:
            reason = "Completed"
        elif code == self.settings.oom_exit_code and not run.killing:
            reason = "OOMKilled"
        else:
            reason = "Error"
        message = plan.termination_file.read_text(errors="replace")[:4096]
        if not message and code and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = b"".join(log.path.read_bytes().splitlines(keepends=True)[-80:])[
                -2048:
            ].decode(errors="replace")
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_iso(),
        }
        if message:
            terminated["message"] = message
        return terminated

    async def _kill(self, run: PodRun) -> None:
        run.killing = True
        alive = [p for p in run.processes.values() if p.returncode is None]
        if not alive:
            return
        for name, process in run.processes.items():
            if process.returncode is None:
                self._event(run, "Killing", f"Stopping container {name}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in alive)), run.grace_s)
        for process in alive:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        for log in run.logs.values():
            await log.mark(running=False, finished=True)

    # -- the log API -----------------------------------------------------------------------
    async def read_log(
        self, namespace: str, name: str, params: dict[str, str]
    ) -> AsyncIterator[bytes]:
        run = self.runs.get((namespace, name))
        container = params["container"]
        log = run.logs.get(container) if run is not None else None
        if log is None:
            pod = self.store.get(self.pods, namespace, name)
            reason = "ContainerCreating"
            for status in pod.get("status", {}).get("containerStatuses", []):
                if status["name"] == container:
                    reason = status.get("state", {}).get("waiting", {}).get("reason", reason)
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: {reason}',
            )
        async for chunk in log.read(params):
            yield chunk
