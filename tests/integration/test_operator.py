"""The operator end to end: real `ict operator`, real kubectl, real `ict train` in trainer pods.

The cluster is the emulated one (tests/cluster); the bucket is moto. Trainings are tiny
(synthetic images, 32 px, a few epochs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import Cluster
from tests.cluster.helpers import apply, eventually, get

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.s3]
ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "imageclassifiertrainings.littledata.dev.yaml"
SECRET = "s3-credentials"
TRAINING_TIMEOUT = 240  # seconds: a loaded 2-core machine imports TensorFlow slowly


class Operator:
    """`ict operator` as a subprocess watching one namespace; restartable."""

    def __init__(self, k8s: Cluster, namespace: str, log: Path):
        self.k8s, self.namespace, self.log = k8s, namespace, log
        self.process: subprocess.Popen | None = None

    def start(self) -> Operator:
        command = [
            *(sys.executable, "-m", "ict_trainer.cli", "operator"),
            *("--namespace", self.namespace, "--trainer-image", "ict-trainer:test"),
            *("--default-cpu", "100m", "--default-memory", "512Mi"),
            *("--health-port", "0", "--status-interval", "0.2"),
        ]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, env=self.k8s.env(), stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def operator(k8s: Cluster, k8s_namespace: str, tmp_path: Path) -> Iterator[Operator]:
    k8s.kubectl("apply", "--validate=false", "-f", str(CRD))
    running = Operator(k8s, k8s_namespace, tmp_path / "operator.log").start()
    yield running
    running.stop()
    print(running.log.read_text()[-6000:])  # shown when the test fails


@pytest.fixture
def bucket(moto_s3, make_bucket, tmp_path: Path, k8s: Cluster, k8s_namespace: str) -> str:
    """A bucket with a tiny synthetic dataset under sample/, and the credentials Secret."""
    from ict_trainer.sample_data import write_sample_data

    name = make_bucket(moto_s3)
    folder = tmp_path / "sample"
    write_sample_data(folder, train=16, validation=6, size=32)
    client = moto_s3.client()
    for path in folder.rglob("*.*"):
        client.upload_file(str(path), name, f"sample/{path.relative_to(folder).as_posix()}")
    k8s.kubectl(
        *("create", "secret", "generic", SECRET, "-n", k8s_namespace),
        f"--from-literal=AWS_ACCESS_KEY_ID={moto_s3.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={moto_s3.secret_key}",
    )
    return name


def training(name: str, bucket: str, endpoint: str, **spec) -> dict:
    body = {
        "strategy": "scratch",
        "dataset": {"uri": f"s3://{bucket}/sample"},
        "output": {"uri": f"s3://{bucket}/runs/{name}"},
        "storage": {"endpoint": endpoint, "region": "us-east-1", "credentialsSecret": SECRET},
        "model": {"imageSize": 48},
        "training": {"epochs": 3, "batchSize": 8},
    }
    body.update(spec)
    return {
        "apiVersion": "littledata.dev/v1alpha1",
        "kind": "ImageClassifierTraining",
        "metadata": {"name": name},
        "spec": body,
    }


def status_of(k8s: Cluster, ns: str, name: str) -> dict:
    return get(k8s, ns, "ict", name).get("status") or {}


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def jobs_of(k8s: Cluster, ns: str) -> list[dict]:
    return get(k8s, ns, "jobs", "-l", "app.kubernetes.io/managed-by=ict-operator")["items"]


def event_reasons(k8s: Cluster, ns: str, name: str) -> list[str]:
    events = get(k8s, ns, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [event["reason"] for event in events]


def wait_phase(k8s: Cluster, ns: str, name: str, phase: str, seen: list | None = None) -> dict:
    def check() -> dict | None:
        status = status_of(k8s, ns, name)
        if seen is not None and status.get("phase") and status["phase"] not in seen:
            seen.append(status["phase"])
        return status if status.get("phase") == phase else None

    return eventually(check, TRAINING_TIMEOUT, f"phase {phase} of {name}")  # type: ignore[return-value]


def pod_log_events(k8s: Cluster, ns: str, pod: dict) -> list[dict]:
    path = k8s.log_path(ns, pod["metadata"]["name"], "trainer")
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_a_training_runs_to_success_across_an_operator_restart_and_is_cleaned_up(
    k8s, k8s_namespace, operator, bucket, moto_s3
):
    ns = k8s_namespace
    apply(k8s, ns, training("cats", bucket, moto_s3.endpoint))
    seen: list[str] = []
    wait_phase(k8s, ns, "cats", "Running", seen)
    # No finalizer: deleting a resource never waits for the operator (owner references clean up).
    assert get(k8s, ns, "ict", "cats")["metadata"].get("finalizers") in (None, [])
    operator.stop()  # a restart in the middle of training
    operator.start()
    status = wait_phase(k8s, ns, "cats", "Succeeded", seen)

    assert seen[-2:] == ["Running", "Succeeded"]
    jobs = jobs_of(k8s, ns)
    assert [job["metadata"]["name"] for job in jobs] == ["cats-train"] == [status["jobName"]]
    container = jobs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["train", "--json", "--spec-env", "ICT_SPEC"]
    assert container["resources"]["limits"] == {"cpu": "100m", "memory": "512Mi"}
    assert status["epoch"] == "3/3"
    assert status["progress"] == {"stage": "train", "epoch": 3, "epochs": 3}
    assert 0.0 <= status["latestMetrics"]["val_accuracy"] <= 1.0
    output = f"s3://{bucket}/runs/cats"
    assert status["artifacts"] == {
        "output": output,
        "model": f"{output}/model.keras",
        "metrics": f"{output}/metrics.json",
        "report": f"{output}/index.html",
    }
    assert condition(status, "Complete")["status"] == "True"
    assert condition(status, "Ready") | {} and condition(status, "Ready")["status"] == "True"
    keys = {
        item["Key"]
        for item in moto_s3.client().list_objects_v2(Bucket=bucket, Prefix="runs/cats/")["Contents"]
    }
    assert {"runs/cats/model.keras", "runs/cats/metrics.json", "runs/cats/index.html"} <= keys

    table = k8s.kubectl("get", "ict", "cats", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "STRATEGY", "PHASE", "EPOCH", "VAL", "ACC", "AGE"]
    assert table[1].split()[:4] == ["cats", "scratch", "Succeeded", "3/3"]
    reasons = event_reasons(k8s, ns, "cats")
    assert reasons.count("JobCreated") == 1  # the restarted operator adopted the Job
    assert {"TrainingStarted", "Succeeded"} <= set(reasons)

    k8s.kubectl("delete", "ict", "cats", "-n", ns)
    eventually(lambda: not jobs_of(k8s, ns), 30, "the Job's deletion")
    eventually(
        lambda: (
            not get(k8s, ns, "pods", "-l", "app.kubernetes.io/managed-by=ict-operator")["items"]
        ),
        30,
        "the pods' deletion",
    )


def test_an_invalid_spec_fails_with_an_event_and_no_job_until_it_is_fixed(
    k8s, k8s_namespace, operator, bucket, moto_s3
):
    ns = k8s_namespace
    bad = training("typo", bucket, moto_s3.endpoint, dataset={"uri": "pictures/cats-dogs"})
    apply(k8s, ns, bad)
    status = wait_phase(k8s, ns, "typo", "Failed")
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.dataset.uri: got 'pictures/cats-dogs'" in ready["message"]
    eventually(lambda: "InvalidSpec" in event_reasons(k8s, ns, "typo"), 20, "the Warning")
    assert jobs_of(k8s, ns) == []

    fixed = training("typo", bucket, moto_s3.endpoint, suspend=True)
    apply(k8s, ns, fixed)
    status = wait_phase(k8s, ns, "typo", "Suspended")
    assert [job["spec"]["suspend"] for job in jobs_of(k8s, ns)] == [True]


def test_stuck_runs_say_why_and_spec_edits_are_not_applied(
    k8s, k8s_namespace, operator, bucket, moto_s3, fake_node
):
    ns = k8s_namespace
    fake_node(capacity={"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "0"})
    no_secret = training("nosecret", bucket, moto_s3.endpoint)
    no_secret["spec"]["storage"]["credentialsSecret"] = "absent"
    gpu = training("gpu", bucket, moto_s3.endpoint, resources={"gpus": 1})
    held = training("held", bucket, moto_s3.endpoint, suspend=True)
    apply(k8s, ns, no_secret, gpu, held)

    def reason(name: str, wanted: str) -> dict | None:
        progressing = condition(status_of(k8s, ns, name), "Progressing")
        return progressing if progressing.get("reason") == wanted else None

    missing = eventually(lambda: reason("nosecret", "ContainerConfigError"), 60, "config error")
    assert missing["status"] == "False"
    assert 'secret "absent" not found' in missing["message"]
    unschedulable = eventually(lambda: reason("gpu", "Unschedulable"), 60, "unschedulable")
    assert "nvidia.com/gpu" in unschedulable["message"]
    assert status_of(k8s, ns, "gpu")["phase"] == "Pending"

    wait_phase(k8s, ns, "held", "Suspended")
    edited = training("held", bucket, moto_s3.endpoint, suspend=True)
    edited["spec"]["training"]["epochs"] = 9
    apply(k8s, ns, edited)
    changed = eventually(
        lambda: condition(status_of(k8s, ns, "held"), "SpecChanged"), 30, "SpecChanged"
    )
    assert changed["reason"] == "SpecImmutable"
    assert "spec.training.epochs" in changed["message"]
    job = next(j for j in jobs_of(k8s, ns) if j["metadata"]["name"] == "held-train")
    sent = next(e for e in job["spec"]["template"]["spec"]["containers"][0]["env"])
    assert json.loads(sent["value"])["spec"]["training"]["epochs"] == 3


def test_suspend_stops_the_pod_and_resume_continues_from_the_checkpoint(
    k8s, k8s_namespace, operator, bucket, moto_s3
):
    ns = k8s_namespace
    apply(k8s, ns, training("pause", bucket, moto_s3.endpoint, training={"epochs": 40}))
    eventually(
        lambda: (status_of(k8s, ns, "pause").get("progress") or {}).get("epoch", 0) >= 2,
        TRAINING_TIMEOUT,
        "two epochs",
    )
    suspend = ("patch", "ict", "pause", "-n", ns, "--type=merge", "-p")
    k8s.kubectl(*suspend, '{"spec":{"suspend":true}}')
    status = wait_phase(k8s, ns, "pause", "Suspended")
    assert condition(status, "Suspended")["status"] == "True"
    assert [job["spec"]["suspend"] for job in jobs_of(k8s, ns)] == [True]
    eventually(
        lambda: all(
            p["status"].get("phase") in ("Succeeded", "Failed")
            for p in get(k8s, ns, "pods", "-l", "littledata.dev/training=pause")["items"]
        ),
        30,
        "the pod to stop",
    )

    k8s.kubectl(*suspend, '{"spec":{"suspend":false}}')
    wait_phase(k8s, ns, "pause", "Succeeded")
    pods = get(k8s, ns, "pods", "-l", "littledata.dev/training=pause")["items"]
    newest = max(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    resumed = [e for e in pod_log_events(k8s, ns, newest) if e["event"] == "resume"]
    assert resumed and resumed[0]["epoch"] >= 2
    assert "Resumed" in event_reasons(k8s, ns, "pause")


def test_operator_refuses_to_start_without_a_trainer_image(k8s):
    result = subprocess.run(
        [sys.executable, "-m", "ict_trainer.cli", "operator", "--all-namespaces"],
        env={k: v for k, v in k8s.env().items() if k != "ICT_TRAINER_IMAGE"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no trainer image: pass --trainer-image" in result.stderr
    assert os.linesep.join(result.stderr.splitlines()).count("error:") == 1


def test_a_resource_is_deleted_with_its_job_while_the_operator_is_down(
    k8s, k8s_namespace, operator, bucket, moto_s3
):
    ns = k8s_namespace
    apply(k8s, ns, training("orphan", bucket, moto_s3.endpoint, suspend=True))
    wait_phase(k8s, ns, "orphan", "Suspended")
    assert len(jobs_of(k8s, ns)) == 1
    operator.stop()
    k8s.kubectl("delete", "ict", "orphan", "-n", ns, "--timeout=30s")
    eventually(lambda: not jobs_of(k8s, ns), 30, "the Job's garbage collection")
