"""StatusMirror: what it patches, and when (the API client replaced by a recorder)."""

from __future__ import annotations

import pytest

from ict_operator import kube, mirror
from ict_operator.mirror import StatusMirror, adopt_foreign_conditions

JOB = {
    "metadata": {"name": "cats-train", "labels": {}},
    "spec": {"suspend": False},
    "status": {"startTime": "2026-11-29T10:00:00Z", "active": 1},
}
RUNNING_POD = {
    "metadata": {"name": "cats-train-abcde", "creationTimestamp": "2026-11-29T10:00:01Z"},
    "spec": {"containers": [{"name": "trainer", "image": "t:1"}]},
    "status": {
        "phase": "Running",
        "containerStatuses": [{"name": "trainer", "state": {"running": {"startedAt": "x"}}}],
    },
}
# What an API server holds after the create handler: the CRD's defaults filled in.
STORED = {
    "phase": "Pending",
    "jobName": "cats-train",
    "restarts": 0,
    "artifacts": {},
    "progress": {},
    "latestMetrics": {},
    "bestMetrics": {},
    "conditions": [],
}


@pytest.fixture
def patches(monkeypatch) -> list[dict]:
    sent: list[dict] = []
    monkeypatch.setattr(kube, "patch_status", lambda ns, name, patch: sent.append(patch))
    monkeypatch.setattr(kube, "read_job", lambda ns, name: None)
    monkeypatch.setattr(mirror.LogFollower, "follow", lambda self, pod: None)
    return sent


def make_mirror(events: list) -> StatusMirror:
    return StatusMirror(
        namespace="vision",
        name="cats",
        generation=1,
        output_uri="s3://r/cats",
        status=dict(STORED),
        interval=0.0,  # every change is due at once
        emit=lambda *event: events.append(event),
    )


def test_a_change_is_patched_once_and_server_defaults_are_not_fought(patches):
    events: list = []
    status_mirror = make_mirror(events)
    for _ in range(3):
        status_mirror.step(JOB, [RUNNING_POD], False, "t1", stored=STORED)
    assert len(patches) == 1
    assert patches[0]["phase"] == "Running"
    assert "artifacts" not in patches[0] and "progress" not in patches[0]
    assert [reason for _, reason, _ in events] == ["TrainingStarted"]


def test_conditions_written_by_others_survive_the_mirrors_patches(patches):
    status_mirror = make_mirror([])
    changed = {"type": "SpecChanged", "status": "True", "reason": "SpecImmutable"}
    status_mirror.step(JOB, [RUNNING_POD], False, "t1", stored={**STORED, "conditions": [changed]})
    assert changed in patches[-1]["conditions"]


def test_adopting_foreign_conditions_keeps_own_mapped_types():
    own = [{"type": "Ready", "status": "True"}, {"type": "SpecChanged", "status": "False"}]
    stored = [{"type": "Ready", "status": "False"}, {"type": "SpecChanged", "status": "True"}]
    assert adopt_foreign_conditions(own, stored) == [
        {"type": "Ready", "status": "True"},
        {"type": "SpecChanged", "status": "True"},
    ]
