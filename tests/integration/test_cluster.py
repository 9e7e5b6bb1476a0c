"""The emulated Kubernetes cluster, driven by real clients: kubectl, the kubernetes client, kopf."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from tests.cluster.cluster import Cluster
from tests.cluster.helpers import apply, eventually, get

pytestmark = pytest.mark.k8s
DATA = Path(__file__).parent / "data"


def job(name: str, script: str, **spec: object) -> dict:
    """A batch/v1 Job running a Python script (command resolved on the test machine's PATH)."""
    container = {
        "name": "main",
        "image": "python:3.11-slim",
        "command": ["python", "-c", textwrap.dedent(script)],
        **spec.pop("container", {}),  # type: ignore[dict-item]
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def only_pod(k8s: Cluster, ns: str, job_name: str) -> dict:
    pods = eventually(lambda: get(k8s, ns, "pods", "-l", f"job-name={job_name}")["items"])
    assert len(pods) == 1, pods
    return pods[0]


def pod_waiting(k8s: Cluster, ns: str, job_name: str, reason: str) -> dict:
    def check() -> dict | None:
        pods = get(k8s, ns, "pods", "-l", f"job-name={job_name}")["items"]
        for status in pods[0]["status"].get("containerStatuses", []) if pods else []:
            if status["state"].get("waiting", {}).get("reason") == reason:
                return status["state"]["waiting"]
        return None

    return eventually(check, what=f"a {reason} container")  # type: ignore[return-value]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture(scope="module")
def ict_crd(k8s: Cluster) -> str:
    k8s.kubectl("apply", "--validate=false", "-f", str(DATA / "ict-crd.yaml"))
    crd = "crd/imageclassifiertrainings.littledata.dev"
    k8s.kubectl("wait", "--for=condition=established", crd, "--timeout=10s")
    return "imageclassifiertrainings.littledata.dev"


def training(name: str, strategy: str = "finetune") -> dict:
    return {
        "apiVersion": "littledata.dev/v1alpha1",
        "kind": "ImageClassifierTraining",
        "metadata": {"name": name},
        "spec": {"strategy": strategy},
    }


def test_printer_columns_and_wide_output(k8s, k8s_namespace, ict_crd):
    ns = k8s_namespace
    apply(k8s, ns, training("cats"))
    status = {"phase": "Running", "progress": {"epoch": "3/10"}, "metrics": {"valAccuracy": 0.91}}
    status["jobName"] = "cats-train"
    k8s.kubectl("patch", "-n", ns, "ict", "cats", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}))  # fmt: skip

    table = k8s.kubectl("get", "-n", ns, "ict").stdout.splitlines()
    wide = k8s.kubectl("get", "-n", ns, "ict", "-o", "wide").stdout.splitlines()

    assert table[0].split() == ["NAME", "STRATEGY", "PHASE", "EPOCH", "VAL", "ACC", "AGE"]
    assert table[1].split()[:5] == ["cats", "finetune", "Running", "3/10", "0.91"]
    assert "JOB" in wide[0].split() and "cats-train" in wide[1].split()
    resources = k8s.kubectl("api-resources", "--api-group=littledata.dev").stdout
    assert "ict" in resources.split() and "ImageClassifierTraining" in resources


def test_apply_twice_updates_spec_and_generation_only(k8s, k8s_namespace, ict_crd):
    ns = k8s_namespace
    assert "created" in apply(k8s, ns, training("dogs", "scratch"))
    first = get(k8s, ns, "ict", "dogs")
    k8s.kubectl("patch", "-n", ns, "ict", "dogs", "--subresource=status", "--type=merge",
                "-p", '{"status": {"phase": "Pending"}}')  # fmt: skip
    with_status = get(k8s, ns, "ict", "dogs")

    changed = training("dogs", "bottleneck")
    changed["status"] = {"phase": "Hacked"}  # the main resource ignores status changes
    assert "configured" in apply(k8s, ns, changed)
    second = get(k8s, ns, "ict", "dogs")

    assert second["spec"] == {"strategy": "bottleneck"}
    assert second["status"] == {"phase": "Pending"}
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert (first["metadata"]["generation"], with_status["metadata"]["generation"]) == (1, 1)
    assert second["metadata"]["generation"] == 2
    revisions = [int(o["metadata"]["resourceVersion"]) for o in (first, with_status, second)]
    assert revisions == sorted(set(revisions))


def test_wait_for_jsonpath_and_condition(k8s, k8s_namespace, ict_crd):
    ns = k8s_namespace
    apply(k8s, ns, training("birds"))
    condition = {"type": "Ready", "status": "True", "reason": "Trained", "message": "done"}
    patch = {"status": {"phase": "Succeeded", "conditions": [condition]}}
    k8s.kubectl("patch", "-n", ns, "ict", "birds", "--subresource=status", "--type=merge",
                "-p", json.dumps(patch))  # fmt: skip

    k8s.kubectl("wait", "-n", ns, "ict/birds", "--for=jsonpath={.status.phase}=Succeeded",
                "--timeout=10s")  # fmt: skip
    k8s.kubectl("wait", "-n", ns, "ict/birds", "--for=condition=Ready", "--timeout=10s")
    described = k8s.kubectl("describe", "-n", ns, "ict", "birds").stdout
    assert "Succeeded" in described and "Trained" in described


def test_job_runs_its_script_and_serves_the_log(k8s, k8s_namespace):
    ns = k8s_namespace
    script = """
        import sys, time
        for n in range(3):
            print(f"epoch {n}", flush=True)
            time.sleep(0.2)
        print("to stderr", file=sys.stderr)
    """
    apply(k8s, ns, job("hello", script))

    followed = k8s.kubectl("logs", "-n", ns, "-f", "job/hello", "--pod-running-timeout=20s")
    k8s.kubectl("wait", "-n", ns, "job/hello", "--for=condition=complete", "--timeout=30s")
    done = get(k8s, ns, "job", "hello")
    pod = only_pod(k8s, ns, "hello")

    lines = ["epoch 0", "epoch 1", "epoch 2", "to stderr"]
    assert followed.stdout.splitlines() == lines
    assert k8s.kubectl("logs", "-n", ns, "job/hello", "--tail=1").stdout == "to stderr\n"
    log_file = k8s.log_path(ns, pod["metadata"]["name"], "main")
    assert log_file.read_text().splitlines() == lines
    conditions = {c["type"]: c["status"] for c in done["status"]["conditions"]}
    assert conditions == {"SuccessCriteriaMet": "True", "Complete": "True"}
    assert (done["status"]["succeeded"], done["status"]["active"]) == (1, 0)
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert pod["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]


def test_failing_job_retries_up_to_the_backoff_limit(k8s, k8s_namespace):
    ns = k8s_namespace
    script = """
        import os
        open(os.environ["MESSAGE_FILE"], "w").write("bad dataset")
        raise SystemExit(3)
    """
    container = {"env": [{"name": "MESSAGE_FILE", "value": "/dev/termination-log"}]}
    apply(k8s, ns, job("fails", script, backoffLimit=2, container=container))

    k8s.kubectl("wait", "-n", ns, "job/fails", "--for=condition=failed", "--timeout=30s")
    failed = get(k8s, ns, "job", "fails")
    pods = get(k8s, ns, "pods", "-l", "job-name=fails")["items"]

    reasons = {c["type"]: c.get("reason") for c in failed["status"]["conditions"]}
    assert reasons["Failed"] == "BackoffLimitExceeded"
    assert failed["status"]["failed"] == 3 and len(pods) == 3
    for pod in pods:
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
        assert terminated["message"] == "bad dataset"


def test_exit_code_137_is_reported_as_oom_killed(k8s, k8s_namespace):
    ns = k8s_namespace
    apply(k8s, ns, job("oom", "import os; os._exit(137)"))
    k8s.kubectl("wait", "-n", ns, "job/oom", "--for=condition=failed", "--timeout=30s")
    terminated = only_pod(k8s, ns, "oom")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_missing_secret_blocks_the_container_until_it_exists(k8s, k8s_namespace):
    ns = k8s_namespace
    env = [
        {"name": "AWS_ACCESS_KEY_ID",
         "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "accessKey"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]  # fmt: skip
    script = "import os; print(os.environ['AWS_ACCESS_KEY_ID'], os.environ['POD_NAME'])"
    apply(k8s, ns, job("creds", script, container={"env": env}))

    missing = pod_waiting(k8s, ns, "creds", "CreateContainerConfigError")
    assert missing["message"] == 'secret "s3-creds" not found'
    k8s.kubectl("create", "secret", "generic", "-n", ns, "s3-creds", "--from-literal=other=x")
    no_key = eventually(
        lambda: (
            pod_waiting(k8s, ns, "creds", "CreateContainerConfigError")["message"]
            != missing["message"]
            and pod_waiting(k8s, ns, "creds", "CreateContainerConfigError")
        )
    )
    assert no_key["message"] == f"couldn't find key accessKey in Secret {ns}/s3-creds"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
              "stringData": {"accessKey": "AKIATEST"}}  # fmt: skip
    k8s.kubectl("delete", "secret", "-n", ns, "s3-creds")
    apply(k8s, ns, secret)
    k8s.kubectl("wait", "-n", ns, "job/creds", "--for=condition=complete", "--timeout=30s")
    pod = only_pod(k8s, ns, "creds")
    assert k8s.kubectl("logs", "-n", ns, "job/creds").stdout.split() == [
        "AKIATEST",
        pod["metadata"]["name"],
    ]


def test_gpu_request_is_unschedulable_on_a_node_without_gpus(k8s, k8s_namespace, fake_node):
    ns = k8s_namespace
    gpu = {"resources": {"limits": {"nvidia.com/gpu": "1"}}}
    apply(k8s, ns, job("gpu", "print('trained on a GPU')", container=gpu))

    def scheduled_condition() -> dict | None:
        pods = get(k8s, ns, "pods", "-l", "job-name=gpu")["items"]
        conditions = pods[0]["status"].get("conditions", []) if pods else []
        return next((c for c in conditions if c["type"] == "PodScheduled"), None)

    condition = eventually(scheduled_condition)
    assert condition["status"] == "False" and condition["reason"] == "Unschedulable"
    assert condition["message"] == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    fake_node(capacity={"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"})
    k8s.kubectl("wait", "-n", ns, "job/gpu", "--for=condition=complete", "--timeout=30s")


def test_unpullable_image_backs_off(k8s, k8s_namespace, fake_node):
    ns = k8s_namespace
    fake_node(unpullable=[r"registry\.example/ict-trainer"])
    container = {"image": "registry.example/ict-trainer:v9"}
    apply(k8s, ns, job("pull", "print('never')", container=container))
    waiting = pod_waiting(k8s, ns, "pull", "ImagePullBackOff")
    assert waiting["message"] == 'Back-off pulling image "registry.example/ict-trainer:v9"'


def test_suspend_kills_the_pod_and_resume_starts_a_new_one(k8s, k8s_namespace, tmp_path):
    ns = k8s_namespace
    script = f"""
        import os, pathlib, time
        pathlib.Path({str(tmp_path)!r}, os.environ["HOSTNAME"]).write_text(str(os.getpid()))
        time.sleep(120)
    """
    apply(k8s, ns, job("long", script))
    first = only_pod(k8s, ns, "long")["metadata"]["name"]
    pid = int(eventually(lambda: (tmp_path / first).exists() and (tmp_path / first).read_text()))

    k8s.kubectl("patch", "-n", ns, "job/long", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    k8s.kubectl("wait", "-n", ns, "job/long", "--for=condition=suspended", "--timeout=20s")
    eventually(lambda: not get(k8s, ns, "pods", "-l", "job-name=long")["items"])
    eventually(lambda: not alive(pid), what=f"the end of process {pid}")
    k8s.kubectl("patch", "-n", ns, "job/long", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    k8s.kubectl("wait", "-n", ns, "job/long", "--for=condition=suspended=false", "--timeout=20s")
    second = only_pod(k8s, ns, "long")["metadata"]["name"]

    assert second != first
    reason = {c["type"]: c["reason"] for c in get(k8s, ns, "job", "long")["status"]["conditions"]}
    assert reason["Suspended"] == "JobResumed"


def test_deleting_an_owner_deletes_its_job_pod_and_process(k8s, k8s_namespace, ict_crd, tmp_path):
    ns = k8s_namespace
    apply(k8s, ns, training("owner"))
    owner = get(k8s, ns, "ict", "owner")
    script = f"""
        import os, pathlib, time
        pathlib.Path({str(tmp_path)!r}, "pid").write_text(str(os.getpid()))
        time.sleep(120)
    """
    owned = job("owned", script)
    owned["metadata"]["ownerReferences"] = [
        {"apiVersion": "littledata.dev/v1alpha1", "kind": "ImageClassifierTraining",
         "name": "owner", "uid": owner["metadata"]["uid"], "controller": True,
         "blockOwnerDeletion": True}
    ]  # fmt: skip
    apply(k8s, ns, owned)
    pid = int(eventually(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text()))

    k8s.kubectl("delete", "-n", ns, "ict", "owner")

    assert not get(k8s, ns, "jobs")["items"]
    assert not get(k8s, ns, "pods")["items"]
    eventually(lambda: not alive(pid), what=f"the end of process {pid}")


def test_label_selectors_filter_lists(k8s, k8s_namespace):
    ns = k8s_namespace
    apply(k8s, ns, *[
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "labels": labels}}
        for n, labels in [("a", {"app": "ict", "tier": "web"}), ("b", {"app": "ict"}),
                          ("c", {"app": "other", "tier": "db"})]
    ])  # fmt: skip

    def names(selector: str) -> list[str]:
        items = get(k8s, ns, "configmaps", "-l", selector)["items"]
        return sorted(i["metadata"]["name"] for i in items)

    assert names("app=ict") == ["a", "b"]
    assert names("app=ict,tier!=web") == ["b"]
    assert names("tier in (web,db)") == ["a", "c"]
    assert names("app notin (ict)") == ["c"]
    assert names("!tier") == ["b"]
    by_name = get(k8s, ns, "configmaps", "--field-selector=metadata.name=b")["items"]
    assert [i["metadata"]["name"] for i in by_name] == ["b"]


def test_api_errors_have_standard_reasons(k8s, k8s_namespace):
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = client.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig)))
    ns = k8s_namespace
    body = {"metadata": {"name": "cm"}, "data": {"k": "v"}}
    created = api.create_namespaced_config_map(ns, body)

    errors = {}
    for name, call in {
        "missing": lambda: api.read_namespaced_config_map("nope", ns),
        "again": lambda: api.create_namespaced_config_map(ns, body),
        "stale": lambda: api.replace_namespaced_config_map(
            "cm", ns, {"metadata": {"name": "cm", "resourceVersion": "1"}, "data": {}}
        ),
        "test": lambda: api.patch_namespaced_config_map(
            "cm", ns, [{"op": "test", "path": "/data/k", "value": "other"}]
        ),
    }.items():
        with pytest.raises(ApiException) as caught:
            call()
        errors[name] = (caught.value.status, json.loads(caught.value.body)["reason"])

    assert errors == {
        "missing": (404, "NotFound"),
        "again": (409, "AlreadyExists"),
        "stale": (409, "Conflict"),
        "test": (422, "Invalid"),
    }
    assert created.metadata.uid and created.metadata.creation_timestamp


def test_watch_streams_existing_then_live_events(k8s, k8s_namespace):
    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig)))
    ns = k8s_namespace
    api.create_namespaced_config_map(ns, {"metadata": {"name": "old", "labels": {"w": "yes"}}})
    listed = api.list_namespaced_config_map(ns, label_selector="w=yes")
    api.create_namespaced_config_map(ns, {"metadata": {"name": "new", "labels": {"w": "yes"}}})
    api.create_namespaced_config_map(ns, {"metadata": {"name": "other"}})
    api.patch_namespaced_config_map("new", ns, {"data": {"k": "v"}})
    api.delete_namespaced_config_map("new", ns)

    from_start = watch.Watch().stream(
        api.list_namespaced_config_map, ns, label_selector="w=yes", timeout_seconds=1
    )
    since_list = watch.Watch().stream(
        api.list_namespaced_config_map, ns, label_selector="w=yes", timeout_seconds=1,
        resource_version=listed.metadata.resource_version,
    )  # fmt: skip

    assert [(e["type"], e["object"].metadata.name) for e in from_start] == [("ADDED", "old")]
    assert [(e["type"], e["object"].metadata.name) for e in since_list] == [
        ("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "new"),
    ]  # fmt: skip


def test_kopf_handles_a_create_event_and_patches_status(k8s_env, k8s_namespace, ict_crd):
    from kopf.testing import KopfRunner

    k8s = k8s_env
    ns = k8s_namespace
    argv = ["run", "--standalone", "-A", "--verbose", str(DATA / "tiny_operator.py")]
    with KopfRunner(argv, timeout=60) as runner:
        apply(k8s, ns, training("kopf", "scratch"))
        k8s.kubectl("wait", "-n", ns, "ict/kopf", "--for=jsonpath={.status.phase}=Accepted",
                    "--timeout=30s")  # fmt: skip
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    assert get(k8s, ns, "ict", "kopf")["status"]["strategy"] == "scratch"
    assert "Handler 'accept' succeeded" in runner.output
