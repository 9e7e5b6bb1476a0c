"""Small helpers for tests that drive the emulated cluster through kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import yaml

from tests.cluster.cluster import Cluster


def eventually(check: Callable[[], object], timeout_s: float = 30, what: str = "") -> object:
    """Poll `check` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what or check} never happened; last value: {value!r}")
        time.sleep(0.1)


def get(k8s: Cluster, ns: str, *what: str) -> dict:
    return json.loads(k8s.kubectl("get", "-n", ns, *what, "-o", "json").stdout)


def apply(k8s: Cluster, ns: str, *objects: dict) -> str:
    documents = yaml.safe_dump_all(list(objects))
    return k8s.kubectl("apply", "--validate=false", "-n", ns, "-f", "-", input=documents).stdout
