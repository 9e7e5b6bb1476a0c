"""The one fake node: its settings, its Node object, and the scheduler's fit check (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.cluster.selectors import label_matcher

NODE_NAME = "emulated-node"
_UNITS = {
    "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def quantity(value: object) -> float:
    """A Kubernetes quantity ("500m", "8Gi", 2) as a number."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value).strip())
    if match is None or match.group(2) not in ("", *_UNITS):
        raise ValueError(f"quantities must match the regular expression, got {value!r}")
    return float(match.group(1)) * _UNITS.get(match.group(2), 1)


@dataclass
class NodeSettings:
    """What the fake node offers and how its kubelet misbehaves; tests change it per test.

    capacity: allocatable resources ("cpu", "memory", extended ones like "nvidia.com/gpu").
    labels: node labels that nodeSelector matches.
    unpullable: regular expressions; an image whose reference matches one fails to pull.
    oom_exit_code: a container exiting with this code is reported OOMKilled (the kernel's
        SIGKILL exit status), as the kubelet reports a container the OOM killer ended.
    max_grace_s: cap on terminationGracePeriodSeconds, so tests never wait 30 s for a kill.
    backoff_s: delay before the job controller replaces a failed pod (Kubernetes: 10 s, doubling).
    path_prefix: folders searched first for a container's command (and put first on its PATH),
        before the venv's bin: a stand-in executable there replaces e.g. the real `ict`.
    """

    capacity: dict[str, str] = field(
        default_factory=lambda: {"cpu": "2", "memory": "8Gi", "pods": "110", "nvidia.com/gpu": "0"}
    )
    labels: dict[str, str] = field(default_factory=dict)
    unpullable: list[str] = field(default_factory=lambda: [r"(^|/)does-not-exist(:|@|$)"])
    oom_exit_code: int = 137
    max_grace_s: float = 3.0
    backoff_s: float = 0.2
    path_prefix: list[str] = field(default_factory=list)

    def node_object(self) -> dict:
        labels = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", **self.labels}
        return {
            "metadata": {"name": NODE_NAME, "labels": labels},
            "status": {
                "capacity": dict(self.capacity),
                "allocatable": dict(self.capacity),
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-emulated", "operatingSystem": "linux"},
            },
        }

    def image_pullable(self, image: str) -> bool:
        return not any(re.search(pattern, image) for pattern in self.unpullable)


def pod_requests(pod: dict) -> dict[str, float]:
    """Summed container requests (limits stand in for missing requests, as defaulting does)."""
    total: dict[str, float] = {}
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in wanted.items():
            total[name] = total.get(name, 0.0) + quantity(value)
    return total


def unschedulable_reason(settings: NodeSettings, pod: dict, running: list[dict]) -> str | None:
    """The scheduler's FailedScheduling message, or None when the pod fits the node."""
    selector = pod["spec"].get("nodeSelector") or {}
    labels = settings.node_object()["metadata"]["labels"]
    terms = ",".join(f"{k}={v}" for k, v in selector.items())
    if not label_matcher(terms)({"metadata": {"labels": labels}}):
        return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    used: dict[str, float] = {}
    for other in running:
        for name, amount in pod_requests(other).items():
            used[name] = used.get(name, 0.0) + amount
    short = [
        name
        for name, amount in sorted(pod_requests(pod).items())
        if amount > quantity(settings.capacity.get(name, "0")) - used.get(name, 0.0)
    ]
    if short:
        reasons = ", ".join(f"1 Insufficient {name}" for name in short)
        return f"0/1 nodes are available: {reasons}."
    return None
