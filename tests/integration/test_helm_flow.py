"""The install flow of the README on the emulated cluster: helm installs the chart, the
operator runs with the chart's settings, the cats-dogs example trains for real, and helm
uninstall leaves nothing behind.

Nothing runs a Deployment here, so the operator is started as a local process from the
installed release's Deployment: the same args, environment and namespace as the chart's pod.
SeaweedFS (real SigV4) stands in for MinIO; the example's dataset, weights and output point at
it, with sizes and epochs made tiny.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.binaries import helm
from tests.chart import CHART, objects_of, operator_container
from tests.cluster.cluster import Cluster
from tests.cluster.helpers import eventually, get
from tests.helpers import CATS_DOGS, MOBILENET_V2, cats_dogs_subset

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.s3]
ROOT = Path(__file__).resolve().parents[2]
RELEASE = "ict"
INSTANCE = "app.kubernetes.io/instance"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_helm(k8s: Cluster, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [helm(), *args], env=k8s.env(), capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result


def release_objects(k8s: Cluster, namespace: str) -> list[dict]:
    manifest = run_helm(k8s, "get", "manifest", RELEASE, "--namespace", namespace).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def start_operator_as_the_chart_runs_it(k8s: Cluster, objects: list[dict], log: Path):
    (deployment,) = objects_of(objects, "Deployment")
    container = operator_container(objects)
    env = {**k8s.env(), **{e["name"]: e["value"] for e in container["env"]}}
    env["POD_NAMESPACE"] = deployment["metadata"]["namespace"]
    command = [sys.executable, "-m", "ict_trainer.cli", *container["args"]]
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def upload(client, bucket: str, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def example_on_the_local_bucket(bucket: str, endpoint: str) -> dict:
    """examples/finetune-cats-dogs.yaml with its locations on the test bucket, made tiny."""
    example = yaml.safe_load((ROOT / "examples" / "finetune-cats-dogs.yaml").read_text())
    spec = copy.deepcopy(example["spec"])
    spec["dataset"]["uri"] = f"s3://{bucket}/cats-dogs"
    spec["output"]["uri"] = f"s3://{bucket}/results/finetune-cats-dogs"
    spec["storage"]["endpoint"] = endpoint
    spec["model"]["weights"] = f"s3://{bucket}/weights/{MOBILENET_V2.name}"
    spec["model"]["imageSize"] = 48
    spec["training"].update(epochs=2, batchSize=8)
    spec["fineTune"].update(epochs=1)
    spec["resources"] = {"gpus": 0, "cpu": "1", "memory": "2Gi"}
    return {**example, "spec": spec}


@pytest.fixture
def new_cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A cluster of its own: a first install, with no CRD applied by other tests' kubectl."""
    cluster = Cluster(tmp_path_factory.mktemp("new-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.skipif(not CATS_DOGS.is_dir(), reason=f"no shared images at {CATS_DOGS}")
def test_helm_install_train_the_example_and_uninstall(new_cluster, seaweedfs, tmp_path):
    k8s = new_cluster
    ns = k8s.create_namespace("vision")
    port = free_port()
    run_helm(
        k8s,
        *("install", RELEASE, str(CHART), "--namespace", ns),
        *("--set", "trainer.image.repository=ict-trainer", "--set", "log.format=plain"),
        *("--set", f"healthPort={port}", "--wait=hookOnly"),
        # The emulated API server serves no /openapi and no server-side apply.
        *("--server-side=false", "--disable-openapi-validation"),
    )
    objects = release_objects(k8s, ns)
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    operator = start_operator_as_the_chart_runs_it(k8s, objects, tmp_path / "operator.log")
    try:
        eventually(lambda: _healthy(port), 60, "the operator's /healthz")

        bucket = "ict-data"
        client = seaweedfs.client()
        client.create_bucket(Bucket=bucket)
        upload(client, bucket, cats_dogs_subset(tmp_path / "cats-dogs", 12, 6), "cats-dogs")
        client.upload_file(str(MOBILENET_V2), bucket, f"weights/{MOBILENET_V2.name}")
        secret = yaml.safe_load((ROOT / "examples" / "s3-credentials.yaml").read_text())
        secret["stringData"] = {
            "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        }
        training = example_on_the_local_bucket(bucket, seaweedfs.endpoint)
        documents = yaml.safe_dump_all([secret, training])
        k8s.kubectl("apply", "--validate=false", "-n", ns, "-f", "-", input=documents)

        name = training["metadata"]["name"]

        def finished() -> dict | None:
            status = get(k8s, ns, "ict", name).get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status = eventually(finished, 300, "the example's training")
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
        assert status["progress"]["stage"] == "finetune"
        assert status["artifacts"]["model"] == (
            f"s3://{bucket}/results/finetune-cats-dogs/model.keras"
        )
        listed = client.list_objects_v2(Bucket=bucket, Prefix="results/finetune-cats-dogs/")
        names = {item["Key"].rsplit("/", 1)[-1] for item in listed["Contents"]}
        assert {"model.keras", "metrics.json", "index.html"} <= names
        (job,) = get(k8s, ns, "jobs", "-l", "app.kubernetes.io/managed-by=ict-operator")["items"]
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "AWS_ENDPOINT_URL", "value": seaweedfs.endpoint} in env
        assert job["spec"]["template"]["spec"]["containers"][0]["image"].startswith("ict-trainer:")

        k8s.kubectl("delete", "ict", name, "-n", ns)
        eventually(lambda: not get(k8s, ns, "jobs")["items"], 30, "the Job's deletion")
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        print((tmp_path / "operator.log").read_text()[-5000:])

    assert len(cluster_objects_of_the_release(k8s)) == 2  # ClusterRole + its binding
    run_helm(k8s, "uninstall", RELEASE, "--namespace", ns, "--wait=hookOnly")
    for kind in ("deployments", "serviceaccounts", "roles", "rolebindings", "secrets"):
        names = [o["metadata"]["name"] for o in get(k8s, ns, kind)["items"]]
        left = [n for n in names if n != secret["metadata"]["name"] and n != "default"]
        assert left == [], f"{kind} left behind by helm uninstall: {left}"
    left = [o["metadata"]["name"] for o in cluster_objects_of_the_release(k8s)]
    assert left == [], f"cluster-scoped objects left behind by helm uninstall: {left}"
    # The CRD stays on purpose (helm.sh/resource-policy: keep): deleting it would delete
    # every user's trainings. The chart README says how to remove it.
    crd = json.loads(
        k8s.kubectl("get", "crd", "imageclassifiertrainings.littledata.dev", "-o", "json").stdout
    )
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def cluster_objects_of_the_release(k8s: Cluster) -> list[dict]:
    found = []
    for kind in ("clusterroles", "clusterrolebindings"):
        items = json.loads(k8s.kubectl("get", kind, "-o", "json").stdout)["items"]
        found += [o for o in items if o["metadata"].get("labels", {}).get(INSTANCE) == RELEASE]
    return found


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
