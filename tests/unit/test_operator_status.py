"""The status mapping (Job + pods + progress -> phase, conditions, message) and log parsing."""

from __future__ import annotations

import json

import pytest

from ict_operator.observe import (
    RunState,
    merge_conditions,
    merge_patch,
    milestones,
    observe,
    significant,
)
from ict_operator.progress import TrainerProgress

OUTPUT = "s3://results/run"


def job(*conditions: tuple[str, str], suspend: bool = False, failed: int = 0, **labels) -> dict:
    return {
        "metadata": {"name": "run-train", "labels": labels},
        "spec": {"suspend": suspend},
        "status": {
            "failed": failed,
            "startTime": "2026-11-29T10:00:00Z",
            "conditions": [
                {"type": kind, "status": "True", "reason": reason} for kind, reason in conditions
            ],
        },
    }


def pod(phase: str, created: str = "2026-11-29T10:00:01Z", **state) -> dict:
    status: dict = {"phase": phase}
    if state.get("conditions"):
        status["conditions"] = state.pop("conditions")
    if state:
        status["containerStatuses"] = [{"name": "trainer", "state": state}]
    return {
        "metadata": {"name": f"run-train-{created[-3:-1]}", "creationTimestamp": created},
        "spec": {"containers": [{"name": "trainer", "image": "ghcr.io/x/ict-trainer:1"}]},
        "status": status,
    }


def state(the_job, pods=(), progress=None, suspend=False) -> RunState:
    return RunState(the_job, list(pods), progress or TrainerProgress(), suspend, OUTPUT)


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


SUMMARY = {
    "status": "succeeded",
    "final": {"epoch": 10, "val_accuracy": 0.962, "val_loss": 0.11},
    "best": {"epoch": 8, "val_accuracy": 0.97, "val_loss": 0.1, "monitor": "val_loss"},
    "cacheHit": True,
}

CASES = {
    "no pod yet": (state(job()), "Pending", "JobCreated", "waiting for the trainer pod"),
    "pod starting": (state(job(), [pod("Pending")]), "Pending", "PodPending", "starting"),
    "unschedulable": (
        state(
            job(),
            [
                pod(
                    "Pending",
                    conditions=[
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                        }
                    ],
                )
            ],
        ),
        "Pending",
        "Unschedulable",
        "Insufficient nvidia.com/gpu",
    ),
    "image pull": (
        state(job(), [pod("Pending", waiting={"reason": "ImagePullBackOff", "message": "nope"})]),
        "Pending",
        "ImagePullFailed",
        "'ghcr.io/x/ict-trainer:1': nope",
    ),
    "missing secret": (
        state(
            job(),
            [
                pod(
                    "Pending",
                    waiting={
                        "reason": "CreateContainerConfigError",
                        "message": 'secret "s3-credentials" not found',
                    },
                )
            ],
        ),
        "Pending",
        "ContainerConfigError",
        'secret "s3-credentials" not found',
    ),
    "training": (
        state(
            job(),
            [pod("Running", running={"startedAt": "x"})],
            TrainerProgress(stage="head", epoch=7, epochs=30, latest={"val_accuracy": 0.951}),
        ),
        "Running",
        "Training",
        "head epoch 7/30, val_accuracy 0.951",
    ),
    "retrying": (
        state(
            job(failed=1),
            [
                pod(
                    "Failed",
                    terminated={
                        "exitCode": 1,
                        "message": json.dumps({"status": "failed", "message": "disk full"}),
                    },
                )
            ],
        ),
        "Pending",
        "Retrying",
        "disk full",
    ),
    "succeeded": (
        state(
            job(("Complete", "Completed")),
            [
                pod(
                    "Succeeded",
                    terminated={
                        "exitCode": 0,
                        "reason": "Completed",
                        "message": json.dumps(SUMMARY),
                    },
                )
            ],
        ),
        "Succeeded",
        "Succeeded",
        "val_accuracy 0.962; report at s3://results/run/index.html",
    ),
    "trainer failed": (
        state(
            job(("Failed", "BackoffLimitExceeded"), failed=3),
            [
                pod(
                    "Failed",
                    terminated={
                        "exitCode": 2,
                        "reason": "Error",
                        "message": json.dumps(
                            {"status": "failed", "message": "bucket 'pics' does not exist"}
                        ),
                    },
                )
            ],
        ),
        "Failed",
        "TrainerFailed",
        "exit code 2): bucket 'pics' does not exist",
    ),
    "log tail when no JSON message": (
        state(
            job(("Failed", "BackoffLimitExceeded")),
            [pod("Failed", terminated={"exitCode": 139, "message": "a\nSegmentation fault\n"})],
        ),
        "Failed",
        "TrainerFailed",
        "Segmentation fault",
    ),
    "oom": (
        state(
            job(("Failed", "BackoffLimitExceeded")),
            [pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})],
        ),
        "Failed",
        "OOMKilled",
        "raise spec.resources.memory",
    ),
    "deadline": (
        state(job(("Failed", "DeadlineExceeded"))),
        "Failed",
        "DeadlineExceeded",
        "activeDeadlineSeconds",
    ),
    "suspended": (state(job(suspend=True), suspend=True), "Suspended", "Suspended", "suspended"),
    "queued by kueue": (
        state(job(suspend=True, **{"kueue.x-k8s.io/queue-name": "team-a"})),
        "Pending",
        "Queued",
        "Kueue queue 'team-a'",
    ),
    "job deleted": (state(None), "Failed", "JobMissing", "apply it again"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_phase_reason_and_message(case):
    run, phase, reason, message = CASES[case]
    status = observe(run)
    assert status["phase"] == phase
    assert conditions(status)["Progressing"][1] == reason
    assert message in status["message"]


def test_conditions_follow_the_phase():
    succeeded = conditions(observe(CASES["succeeded"][0]))
    assert succeeded == {
        "Ready": ("True", "JobCreated"),
        "Progressing": ("False", "Succeeded"),
        "Complete": ("True", "Succeeded"),
        "Failed": ("False", "Succeeded"),
        "Suspended": ("False", "Succeeded"),
    }
    stuck = conditions(observe(CASES["unschedulable"][0]))
    assert stuck["Progressing"] == ("False", "Unschedulable")
    assert conditions(observe(CASES["job deleted"][0]))["Ready"] == ("False", "JobMissing")
    assert conditions(observe(CASES["suspended"][0]))["Suspended"] == ("True", "Suspended")


def test_success_carries_final_and_best_metrics_artifacts_and_cache_hit():
    status = observe(CASES["succeeded"][0])
    assert status["latestMetrics"] == {"epoch": 10, "val_accuracy": 0.962, "val_loss": 0.11}
    assert status["bestMetrics"] == {"epoch": 8, "val_accuracy": 0.97, "val_loss": 0.1}
    assert status["artifacts"] == {
        "output": OUTPUT,
        "model": f"{OUTPUT}/model.keras",
        "metrics": f"{OUTPUT}/metrics.json",
        "report": f"{OUTPUT}/index.html",
    }
    assert status["cacheHit"] is True
    assert status["jobName"] == "run-train"
    assert status["startTime"] == "2026-11-29T10:00:00Z"


@pytest.mark.parametrize("via", ["termination message", "log line"])
def test_an_up_to_date_run_succeeds_with_the_metrics_of_the_training_found(via):
    """A re-run over an output that already holds its training prints no epoch and trains
    nothing: its summary alone carries the metrics (read back from metrics.json)."""
    summary = {**SUMMARY, "upToDate": True, "seconds": 3.2, "saved": {"epoch": 8}}
    terminated = {"exitCode": 0, "reason": "Completed"}
    progress = TrainerProgress()
    if via == "log line":
        progress.feed_text(
            json.dumps({"event": "upToDate", "message": "output is up to date"})
            + "\n"
            + json.dumps({"event": "summary", **summary})
        )
    else:
        terminated["message"] = json.dumps(summary)
    status = observe(
        state(job(("Complete", "Completed")), [pod("Succeeded", terminated=terminated)], progress)
    )
    assert status["phase"] == "Succeeded"
    assert conditions(status)["Complete"] == ("True", "Succeeded")
    assert status["latestMetrics"] == {"epoch": 10, "val_accuracy": 0.962, "val_loss": 0.11}
    assert status["bestMetrics"] == {"epoch": 8, "val_accuracy": 0.97, "val_loss": 0.1}
    assert status["message"].startswith("up to date, nothing to train: val_accuracy 0.962;")
    assert status["artifacts"]["model"] == f"{OUTPUT}/model.keras"


def test_the_newest_pod_decides():
    old_failed = pod("Failed", "2026-11-29T10:00:01Z", terminated={"exitCode": 1})
    new_running = pod("Running", "2026-11-29T10:05:01Z", running={"startedAt": "x"})
    status = observe(state(job(failed=1), [old_failed, new_running]))
    assert status["phase"] == "Running"
    assert status["restarts"] == 1
    assert "resumed after 1 failed pod" in status["message"]


def test_progress_lines_are_parsed_and_noise_is_ignored():
    progress = TrainerProgress()
    lines = [
        "2026-11-29 10:00:00.1 I tensorflow/core oneDNN custom operations are on",
        '{"event": "start", "name": "run", "strategy": "finetune", "imageSize": 224}',
        '{"event": "features", "cacheHit": true, "key": "abc", "uri": "s3://c/abc"}',
        '{"event": "epoch", "stage": "head", "epoch": 1, "epochs": 3, '
        '"metrics": {"loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9}}',
        '{"event": "epoch", "stage": "head", "epoch": 2, "epochs": 3, '
        '"metrics": {"loss": 0.3, "val_loss": 0.45, "val_accuracy": 0.92}}',
        '{"event": "epoch", "stage": "head", "epo',  # cut by a restart
        "not json {",
        "[1, 2]",
        '{"no_event": 1}',
        '{"event": "epoch", "stage": "head", "epoch": "three", "metrics": "bad"}',
        b'\xff\xfe{"event": "unknown"}',
        "",
    ]
    changed = [progress.feed(line) for line in lines]
    assert changed.count(True) == 4  # features + 2 epochs + the malformed epoch's stage
    assert progress.cache_hit is True
    assert progress.stage == "head"
    assert progress.best == {"loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9}


def test_a_new_stage_starts_its_own_best_and_epoch_text():
    progress = TrainerProgress()
    progress.feed(
        '{"event":"epoch","stage":"head","epoch":3,"epochs":3,"metrics":{"val_loss":0.2}}'
    )
    progress.feed(
        '{"event":"epoch","stage":"finetune","epoch":1,"epochs":5,"metrics":{"val_loss":0.3}}'
    )
    assert progress.best == {"val_loss": 0.3}
    assert progress.epoch_text == "1/5"


def test_merge_conditions_keeps_transition_times_while_status_holds():
    first = merge_conditions([], [{"type": "Ready", "status": "True", "reason": "A"}], "t1", 1)
    first.append({"type": "SpecChanged", "status": "True", "reason": "SpecImmutable"})
    same = merge_conditions(first, [{"type": "Ready", "status": "True", "reason": "B"}], "t2", 2)
    flipped = merge_conditions(same, [{"type": "Ready", "status": "False", "reason": "C"}], "t3", 2)
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "B"
    assert same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert flipped[1]["type"] == "SpecChanged"  # conditions the mapping does not own stay


def test_merge_patch_sends_only_what_changed_and_nulls_what_went():
    old = {"phase": "Running", "latestMetrics": {"loss": 1.0, "acc": 0.5}, "epoch": "1/3"}
    new = {"phase": "Running", "latestMetrics": {"loss": 0.5}, "cacheHit": True}
    assert merge_patch(old, new) == {
        "latestMetrics": {"loss": 0.5, "acc": None},
        "cacheHit": True,
        "epoch": None,
    }
    assert merge_patch(new, new) == {}


def test_only_state_changes_are_significant():
    base = observe(CASES["training"][0])
    later = dict(base, epoch="8/30", latestMetrics={"val_accuracy": 0.96}, message="other")
    assert not significant(base, later)
    assert significant(base, observe(CASES["succeeded"][0]))


def test_milestones_become_events_once():
    pending = observe(CASES["no pod yet"][0])
    training = observe(CASES["training"][0])
    done = observe(CASES["succeeded"][0])
    assert milestones(pending, training) == [("Normal", "TrainingStarted", training["message"])]
    assert milestones(training, training) == []
    reasons = [reason for _, reason, _ in milestones(training, done)]
    assert reasons == ["Succeeded", "FeaturesCacheHit"]
    retrying = observe(CASES["retrying"][0])
    assert milestones(retrying, training)[0][1] == "Resumed"
    failed = observe(CASES["trainer failed"][0])
    assert milestones(training, failed)[0][:2] == ("Warning", "TrainerFailed")
