"""The whole product on a real cluster: kind + MinIO, both images, the chart, a real training.

Opt-in (`make e2e`): it needs Docker and kind, builds both images (the trainer's holds CUDA
TensorFlow: minutes and gigabytes) and trains a tiny CPU-only model. Elsewhere it is collected
and skipped with the reason; the manifests it applies are still checked here, offline.

Commands as kind documents them: `kind create cluster --name --image --kubeconfig --wait`,
`kind load docker-image IMAGE... --name`, `kind delete cluster --name`. MinIO: `minio server
/data --console-address :9001` with MINIO_ROOT_USER/MINIO_ROOT_PASSWORD, probes on
/minio/health/live and /minio/health/ready (port 9000).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ict_operator.validation import validate_resource
from tests.binaries import helm
from tests.chart import CHART, ROOT
from tests.cluster.cluster import KUBECTL
from tests.cluster.helpers import eventually
from tests.helpers import ARTIFACTS

HERE = Path(__file__).parent
# kind v0.29.0's node image for Kubernetes 1.33, pinned by digest as kind's release notes say.
KIND_NODE_IMAGE = (
    "kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f"
)
MINIO_IMAGE = os.environ.get("ICT_E2E_MINIO_IMAGE")  # default: the one in minio.yaml
IMAGES = {"operator": "ict-operator:e2e", "trainer": "ict-trainer:e2e"}
OPERATOR_NAMESPACE, TRAINING_NAMESPACE, RELEASE = "ict-system", "ict-e2e", "ict"
NAME = "e2e-scratch"
DATA, RESULTS = "ict-data", "ict-results"


def training_manifest() -> dict:
    """A CPU-only scratch run small enough for a kind node: a few dozen 48-px images."""
    return {
        "apiVersion": "littledata.dev/v1alpha1",
        "kind": "ImageClassifierTraining",
        "metadata": {"name": NAME, "namespace": TRAINING_NAMESPACE},
        "spec": {
            "strategy": "scratch",
            "dataset": {"uri": f"s3://{DATA}/sample"},
            "output": {"uri": f"s3://{RESULTS}/{NAME}"},
            "storage": {"endpoint": "http://minio.minio.svc:9000", "credentialsSecret": "ict-s3"},
            "model": {"imageSize": 48, "scratchFilters": [8, 8]},
            "training": {"epochs": 2, "batchSize": 8},
            "resources": {"cpu": "1", "memory": "2Gi"},
        },
    }


def chart_values() -> list[str]:
    return [
        *("--set", f"image.repository={IMAGES['operator'].split(':')[0]}"),
        *("--set", f"image.tag={IMAGES['operator'].split(':')[1]}"),
        *("--set", f"trainer.image.repository={IMAGES['trainer'].split(':')[0]}"),
        *("--set", f"trainer.image.tag={IMAGES['trainer'].split(':')[1]}"),
        *("--set", f"watch.namespaces={{{TRAINING_NAMESPACE}}}"),
        *("--set", "log.level=debug"),
    ]


def test_the_e2e_manifests_are_valid_here(tmp_path):
    """Checked on every machine: what the kind test applies is what the operator accepts."""
    assert validate_resource(training_manifest()).training.epochs == 2
    objects = list(yaml.safe_load_all((HERE / "minio.yaml").read_text()))
    image = objects[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"quay\.io/minio/minio:RELEASE\.[0-9TZ-]+", image), image
    result = subprocess.run(
        [Path(sys.executable).parent / "kubernetes-validate", "--strict", "--quiet",
         "-k", "1.33.0", str(HERE / "minio.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lint = subprocess.run(
        [helm(), "lint", "--strict", str(CHART), *chart_values()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


def skip_reason() -> str | None:
    missing = [tool for tool in ("docker", "kind") if shutil.which(tool) is None]
    if missing:
        return (
            f"kind + MinIO test: {' and '.join(missing)} not on PATH; run `make e2e` on a "
            "machine with Docker and kind"
        )
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "kind + MinIO test: the Docker engine does not answer `docker info`"
    if os.environ.get("ICT_E2E") != "1":
        return "kind + MinIO test is opt-in (it builds both images): run `make e2e`"
    return None


def run(*command: str, timeout: float = 600, stdin: str | None = None) -> str:
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Cluster:
    """A kind cluster driven with the real kubectl and helm through its own kubeconfig."""

    def __init__(self, name: str, kubeconfig: Path):
        self.name, self.kubeconfig = name, kubeconfig

    def kubectl(self, *args: str, timeout: float = 600, stdin: str | None = None) -> str:
        return run(str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args, timeout=timeout,
                   stdin=stdin)  # fmt: skip

    def helm(self, *args: str, timeout: float = 600) -> str:
        return run(helm(), "--kubeconfig", str(self.kubeconfig), *args, timeout=timeout)

    def names(self, *args: str) -> list[str]:
        return self.kubectl("get", *args, "-o", "name").split()

    def diagnostics(self) -> str:
        parts = []
        for args in (
            ("get", "ict,jobs,pods", "-n", TRAINING_NAMESPACE, "-o", "wide"),
            ("describe", "ict", "-n", TRAINING_NAMESPACE),
            ("logs", "-n", OPERATOR_NAMESPACE, "deployment/ict-ict-operator", "--tail=100"),
            ("logs", "-n", TRAINING_NAMESPACE, "-l", "job-name", "--tail=50"),
        ):
            result = subprocess.run(
                [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            parts.append(f"$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    for component, image in IMAGES.items():
        run("docker", "build", "-f", str(ROOT / f"Dockerfile.{component}"), "-t", image,
            str(ROOT), timeout=3600)  # fmt: skip
    name = f"ict-e2e-{secrets.token_hex(3)}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    try:
        run("kind", "create", "cluster", "--name", name, "--image", KIND_NODE_IMAGE,
            "--kubeconfig", str(kubeconfig), "--wait", "180s", timeout=900)  # fmt: skip
        run("kind", "load", "docker-image", *IMAGES.values(), "--name", name, timeout=1800)
        yield Cluster(name, kubeconfig)
    finally:
        run("kind", "delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig))


@dataclass(frozen=True)
class Minio:
    client: Any  # boto3 S3 client through `kubectl port-forward`
    user: str
    password: str = field(repr=False)


@pytest.fixture(scope="module")
def minio(cluster: Cluster) -> Iterator[Minio]:
    """MinIO in the cluster, reached from the test through `kubectl port-forward`."""
    import boto3
    from botocore.config import Config

    user, password = "ict-e2e", secrets.token_hex(16)
    cluster.kubectl("create", "namespace", "minio")
    cluster.kubectl("create", "secret", "generic", "minio-root", "-n", "minio",
                    f"--from-literal=MINIO_ROOT_USER={user}",
                    f"--from-literal=MINIO_ROOT_PASSWORD={password}")  # fmt: skip
    manifest = (HERE / "minio.yaml").read_text()
    if MINIO_IMAGE:
        manifest = re.sub(r"quay\.io/minio/minio:\S+", MINIO_IMAGE, manifest)
    cluster.kubectl("apply", "-f", "-", stdin=manifest)
    cluster.kubectl("rollout", "status", "deployment/minio", "-n", "minio", "--timeout=300s")
    forward = subprocess.Popen(
        [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), "port-forward", "-n", "minio",
         "svc/minio", ":9000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # "Forwarding from 127.0.0.1:PORT -> 9000": ':9000' lets kubectl choose a free port.
        line = forward.stdout.readline() if forward.stdout else ""
        port = re.search(r"127\.0\.0\.1:(\d+) -> 9000", line)
        assert port, f"kubectl port-forward said {line!r}"
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port.group(1)}",
            aws_access_key_id=user,
            aws_secret_access_key=password,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        yield Minio(client, user, password)
    finally:
        forward.terminate()
        forward.wait(timeout=30)


def test_training_on_kind_with_minio_from_helm_install_to_uninstall(cluster, minio, tmp_path):
    s3 = minio.client
    # Data: a generated two-class set, uploaded as a user would (train/ and validation/).
    sample = tmp_path / "sample"
    run(str(Path(sys.executable).parent / "ict"), "sample-data", str(sample),
        "--train", "24", "--validation", "8", "--size", "48")  # fmt: skip
    for bucket in (DATA, RESULTS):
        s3.create_bucket(Bucket=bucket)
    for path in sorted(p for p in sample.rglob("*") if p.is_file()):
        s3.upload_file(str(path), DATA, f"sample/{path.relative_to(sample).as_posix()}")

    cluster.kubectl("create", "namespace", TRAINING_NAMESPACE)
    cluster.kubectl("create", "secret", "generic", "ict-s3", "-n", TRAINING_NAMESPACE,
                    f"--from-literal=AWS_ACCESS_KEY_ID={minio.user}",
                    f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.password}")  # fmt: skip
    cluster.helm("install", RELEASE, str(CHART), "-n", OPERATOR_NAMESPACE, "--create-namespace",
                 *chart_values(), "--wait", "--timeout", "5m")  # fmt: skip

    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(training_manifest()))
    try:
        cluster.kubectl("wait", f"ict/{NAME}", "-n", TRAINING_NAMESPACE,
                        "--for=jsonpath={.status.phase}=Succeeded", "--timeout=20m",
                        timeout=1500)  # fmt: skip
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{cluster.diagnostics()}") from None

    table = cluster.kubectl("get", "ict", "-n", TRAINING_NAMESPACE).splitlines()
    assert table[0].split()[:4] == ["NAME", "STRATEGY", "PHASE", "EPOCH"]
    assert table[1].split()[:4] == [NAME, "scratch", "Succeeded", "2/2"]

    resource = json.loads(cluster.kubectl("get", f"ict/{NAME}", "-n", TRAINING_NAMESPACE,
                                          "-o", "json"))  # fmt: skip
    status = resource["status"]
    output = f"s3://{RESULTS}/{NAME}"
    assert status["artifacts"] == {
        "output": output,
        "model": f"{output}/model.keras",
        "metrics": f"{output}/metrics.json",
        "report": f"{output}/index.html",
    }
    assert "val_accuracy" in status["latestMetrics"]
    assert "val_accuracy" in status["bestMetrics"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    listed = s3.list_objects_v2(Bucket=RESULTS, Prefix=f"{NAME}/")["Contents"]
    assert {o["Key"].removeprefix(f"{NAME}/") for o in listed} >= ARTIFACTS

    # The trainer image's TensorFlow runs and says how many GPUs it sees: none on kind.
    job = status["jobName"]
    log = cluster.kubectl("logs", f"job/{job}", "-n", TRAINING_NAMESPACE)
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    (start,) = [e for e in events if e["event"] == "start"]
    assert start["gpus"] == 0

    # Deleting the resource deletes its Job and pods (owner references).
    cluster.kubectl("delete", f"ict/{NAME}", "-n", TRAINING_NAMESPACE, "--wait=true")
    eventually(lambda: not cluster.names("jobs,pods", "-n", TRAINING_NAMESPACE),
               timeout_s=180, what="the Job and its pods deleted")  # fmt: skip

    # helm uninstall leaves nothing of the release but the CRD, kept on purpose.
    cluster.helm("uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait", "--timeout", "5m")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    eventually(
        lambda: (
            not cluster.names(
                "deployments,replicasets,pods,serviceaccounts,roles,rolebindings",
                "-A",
                "-l",
                selector,
            )
            and not cluster.names("clusterroles,clusterrolebindings", "-l", selector)
        ),
        timeout_s=180,
        what="every object of the release deleted",
    )
    crd = json.loads(cluster.kubectl("get", "crd", "imageclassifiertrainings.littledata.dev",
                                     "-o", "json"))  # fmt: skip
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cluster.kubectl("delete", "crd", "imageclassifiertrainings.littledata.dev", "--wait=true")
