"""The Helm chart, through the real helm binary: lint, render, RBAC, schema, CRD, examples.

Every rendered object, and the example Secret, is validated offline with
`kubernetes-validate --strict`; the ImageClassifierTraining examples are checked against the
CRD's schema in tests/unit/test_crd.py and against the operator's cluster rules here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ict_operator.settings import OperatorSettings, add_arguments, settings_from
from ict_operator.validation import validate_resource
from tests.chart import (
    CHART,
    CHART_CRD_FILE,
    CRD_FILE,
    ROOT,
    objects_of,
    operator_container,
    operator_env,
    render,
    run_helm,
    set_args,
)

EXAMPLES = ROOT / "examples"
# The Kubernetes versions the rendered objects must be valid for: kind's node and the newest.
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]

# What the operator does in a watched namespace (README, "RBAC it needs"): exactly this.
NAMESPACED_RULES = {
    ("littledata.dev", "imageclassifiertrainings"): {"get", "list", "watch", "patch"},
    ("littledata.dev", "imageclassifiertrainings/status"): {"get", "patch", "update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
# Cluster-scoped reads of kopf: it scans and watches CRDs always, and lists and watches
# namespaces when it watches named namespaces (not with --all-namespaces).
CRD_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"}}
NAMESPACE_RULES = {("", "namespaces"): {"list", "watch"}}

SCENARIOS = {
    "default": {},
    "two namespaces": {"watch.namespaces": "{team-a,team-b}"},
    "all namespaces": {"watch.allNamespaces": "true"},
    "custom GPU and images": {
        "trainer.gpuResource": "amd.com/gpu",
        "trainer.image.repository": "registry.example/ml/ict-trainer",
        "trainer.image.tag": "1.2.3",
        "trainer.image.pullPolicy": "Always",
        "image.tag": "1.2.3",
        "trainer.defaultResources.cpu": "500m",
        "trainer.defaultResources.memory": "3Gi",
        "log.level": "debug",
        "log.format": "plain",
        "healthPort": "9090",
    },
    "no CRD, own service account": {
        "crds.install": "false",
        "serviceAccount.create": "false",
        "serviceAccount.name": "ml-operator",
    },
}


def rules_of(role: dict) -> dict[tuple[str, str], set[str]]:
    """{(group, resource): verbs}; several rules on one resource are merged."""
    rules: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames etc.
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rules.setdefault((group, resource), set()).update(rule["verbs"])
    return rules


def settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """What `ict operator` makes of an environment: the operator's own parser and checks."""
    for name in [n for n in os.environ if n.startswith("ICT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from(parser.parse_args([]))


@pytest.mark.parametrize("values", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_lint_strict_passes(values):
    result = run_helm("lint", "--strict", str(CHART), *set_args(values))
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_deployment_runs_one_restricted_operator_on_the_release_namespace(monkeypatch):
    objects = render(namespace="ict-system")
    (deployment,) = objects_of(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == "ict-system"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ict-ict-operator"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    container = operator_container(objects)
    assert container["image"] == "ict-operator:0.1.0"
    assert container["args"] == ["operator"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert settings_from_env(operator_env(objects), monkeypatch) == OperatorSettings(
        trainer_image="ict-trainer:0.1.0",
        namespaces=("ict-system",),
        trainer_image_pull_policy="IfNotPresent",
        gpu_resource="nvidia.com/gpu",
        default_cpu="2",
        default_memory="8Gi",
        health_port=8080,
        log_format="json",
        verbose=False,
    )


def test_non_default_values_reach_the_operator_settings(monkeypatch):
    objects = render(SCENARIOS["custom GPU and images"])
    container = operator_container(objects)
    assert container["image"] == "ict-operator:1.2.3"
    assert container["ports"][0]["containerPort"] == 9090
    assert settings_from_env(operator_env(objects), monkeypatch) == OperatorSettings(
        trainer_image="registry.example/ml/ict-trainer:1.2.3",
        namespaces=("ict-system",),
        trainer_image_pull_policy="Always",
        gpu_resource="amd.com/gpu",
        default_cpu="500m",
        default_memory="3Gi",
        health_port=9090,
        log_format="plain",
        verbose=True,
    )


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [({}, ("ict-system",)), (SCENARIOS["two namespaces"], ("team-a", "team-b"))],
    ids=["release namespace", "two namespaces"],
)
def test_a_role_per_watched_namespace_with_exactly_the_operators_needs(
    values, namespaces, monkeypatch
):
    objects = render(values, namespace="ict-system")
    assert settings_from_env(operator_env(objects), monkeypatch).namespaces == namespaces
    subject = {"kind": "ServiceAccount", "name": "ict-ict-operator", "namespace": "ict-system"}
    roles = objects_of(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    for role in roles:
        assert rules_of(role) == NAMESPACED_RULES
    bindings = objects_of(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "ict-ict-operator",
        }
        assert binding["subjects"] == [subject]
    (cluster_role,) = objects_of(objects, "ClusterRole")
    assert rules_of(cluster_role) == CRD_RULES | NAMESPACE_RULES
    (cluster_binding,) = objects_of(objects, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert cluster_binding["subjects"] == [subject]


def test_all_namespaces_gets_a_cluster_role_and_no_roles(monkeypatch):
    objects = render(SCENARIOS["all namespaces"])
    assert operator_env(objects)["ICT_WATCH_NAMESPACES"] == "*"
    assert settings_from_env(operator_env(objects), monkeypatch).clusterwide
    assert objects_of(objects, "Role") == [] == objects_of(objects, "RoleBinding")
    roles = {r["metadata"]["name"]: rules_of(r) for r in objects_of(objects, "ClusterRole")}
    assert roles == {"ict-ict-operator": NAMESPACED_RULES, "ict-ict-operator-cluster": CRD_RULES}
    bindings = objects_of(objects, "ClusterRoleBinding")
    assert sorted(b["roleRef"]["name"] for b in bindings) == sorted(roles)


@pytest.mark.parametrize("values", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_rbac_has_no_wildcards_and_no_secrets(values):
    for role in [o for o in render(values) if o["kind"] in ("Role", "ClusterRole")]:
        for (group, resource), verbs in rules_of(role).items():
            assert "*" not in (group, resource) and "*" not in verbs, role
            assert resource != "secrets", role


def test_own_service_account_is_bound_and_none_is_created():
    objects = render(SCENARIOS["no CRD, own service account"])
    assert objects_of(objects, "ServiceAccount") == []
    assert objects_of(objects, "CustomResourceDefinition") == []
    pod = objects_of(objects, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ml-operator"
    for binding in objects_of(objects, "RoleBinding") + objects_of(objects, "ClusterRoleBinding"):
        assert binding["subjects"][0]["name"] == "ml-operator"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"healthPort": "eighty"}, "at '/healthPort': got string, want integer"),
        ({"unknownKey": "1"}, "additional properties 'unknownKey' not allowed"),
        ({"watch.namespaces": "{Team_A}"}, "/watch/namespaces/0"),
        ({"watch.allNamespaces": "true", "watch.namespaces": "{a}"}, "/watch/namespaces"),
        ({"trainer.gpuResource": "gpu"}, "/trainer/gpuResource"),
        ({"trainer.defaultResources.memory": "lots"}, "/trainer/defaultResources/memory"),
        ({"log.level": "trace"}, "/log/level"),
        ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy"),
    ],
    ids=[
        "wrong type",
        "unknown key",
        "bad namespace",
        "all and some namespaces",
        "GPU resource without domain",
        "bad quantity",
        "bad log level",
        "bad pull policy",
    ],
)
def test_schema_refuses_wrong_values(values, complaint):
    for command in ("lint", "template"):
        args = ["--strict"] if command == "lint" else []
        result = run_helm(command, *args, str(CHART), *set_args(values))
        assert result.returncode != 0, f"helm {command} accepted {values}"
        assert complaint in result.stdout + result.stderr


def test_notes_tell_what_to_do_next():
    result = run_helm(
        "install", "ict", str(CHART), "--dry-run=client", "-n", "ict-system",
        *set_args({"watch.namespaces": "{vision}"}),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    for step in (
        "kubectl -n ict-system rollout status deployment/ict-ict-operator",
        "kubectl -n vision create secret generic ict-s3",
        "aws s3 sync",
        "mc mirror",
        "kubectl -n vision apply -f examples/finetune-cats-dogs.yaml",
        "kubectl -n vision get ict -w",
        "{.status.artifacts.report}",
        "kubectl delete crd imageclassifiertrainings.littledata.dev",
    ):
        assert step in notes


def test_chart_crd_is_the_repositorys():
    assert CHART_CRD_FILE.read_bytes() == CRD_FILE.read_bytes(), (
        f"{CHART_CRD_FILE} differs from {CRD_FILE}: run `make chart-crd`"
    )
    crd = yaml.safe_load(CRD_FILE.read_text())
    (rendered,) = objects_of(render(), "CustomResourceDefinition")
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    for added in ("annotations", "labels"):
        for key in rendered["metadata"][added].keys() - crd["metadata"].get(added, {}).keys():
            del rendered["metadata"][added][key]
    rendered["metadata"] = {k: v for k, v in rendered["metadata"].items() if v}
    assert rendered == crd
    (unkept,) = objects_of(render({"crds.keep": "false"}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in unkept["metadata"].get("annotations", {})


@pytest.mark.parametrize("values", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_rendered_objects_and_example_secret_are_valid_kubernetes(values, tmp_path):
    files = []
    for index, obj in enumerate(render(values)):
        files.append(tmp_path / f"{index}-{obj['kind']}.yaml")
        files[-1].write_text(yaml.safe_dump(obj))
    files.append(EXAMPLES / "s3-credentials.yaml")
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run(
            [Path(sys.executable).parent / "kubernetes-validate", "--strict", "--quiet",
             "-k", version, *map(str, files)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"Kubernetes {version}:\n{result.stdout}{result.stderr}"


def example_trainings() -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if document["kind"] == "ImageClassifierTraining":
            found.append((path, document))
    return found


def test_cluster_examples_pass_the_operators_checks_and_read_the_credentials_secret():
    # Their schema is checked against the CRD in tests/unit/test_crd.py.
    assert {p.name for p, _ in example_trainings()} >= {
        "finetune-cats-dogs.yaml",
        "bottleneck-cats-dogs.yaml",
        "scratch-cats-dogs.yaml",
        "multiclass-flowers.yaml",
    }
    secret = yaml.safe_load((EXAMPLES / "s3-credentials.yaml").read_text())
    assert secret["kind"] == "Secret"
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for path, document in example_trainings():
        spec = document["spec"]
        if not spec["dataset"]["uri"].startswith("s3://"):
            continue  # the local examples run with `ict train -f`
        validate_resource(document)  # the operator accepts it: every location is a bucket
        assert spec["storage"]["credentialsSecret"] == secret["metadata"]["name"], path
        assert spec["output"]["uri"].startswith("s3://"), path
        if spec["strategy"] != "scratch":
            assert spec["resources"]["gpus"] == 1, path
