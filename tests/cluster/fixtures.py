"""pytest fixtures of the emulated cluster (imported by tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster.cluster import Cluster
from tests.cluster.node import NodeSettings


@pytest.fixture(scope="session")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One emulated cluster for the session; every pod process is killed at teardown."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def k8s_namespace(k8s: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleting it at teardown kills its pods."""
    name = k8s.create_namespace(re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()))
    yield name
    k8s.delete_namespace(name)


@pytest.fixture
def fake_node(k8s: Cluster) -> Iterator[Callable[..., NodeSettings]]:
    """Change the node for one test: `fake_node(capacity={...}, unpullable=[...])`."""
    saved = dataclasses.replace(k8s.settings)

    def configure(**changes: Any) -> NodeSettings:
        return k8s.configure_node(**changes)

    yield configure
    k8s.configure_node(**dataclasses.asdict(saved))


@pytest.fixture
def k8s_env(k8s: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """KUBECONFIG points at the cluster for this test, also for an already imported kubernetes
    client (it reads KUBECONFIG once, at import) and for kopf's login through it."""
    monkeypatch.setenv("KUBECONFIG", str(k8s.kubeconfig))
    try:
        import kubernetes.config.kube_config as kube_config
    except ImportError:
        return k8s
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(k8s.kubeconfig))
    return k8s
