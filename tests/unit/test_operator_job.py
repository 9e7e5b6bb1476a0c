"""build_job and the cluster rules of validate_resource: pure, compared as dicts."""

from __future__ import annotations

import copy
import json

import pytest

from ict_api import SpecError
from ict_operator.builders import build_job, job_name, short_name
from ict_operator.settings import OperatorSettings
from ict_operator.validation import validate_resource

SETTINGS = OperatorSettings(trainer_image="registry.example/ict-trainer:0.1.0")
UID = "0b6e7c1e-1111-4222-8333-944455556666"


def resource(name: str = "cats-dogs", **spec_fields) -> dict:
    spec = {
        "strategy": "finetune",
        "dataset": {"uri": "s3://pictures/cats-dogs"},
        "output": {"uri": "s3://results/cats-dogs"},
        "storage": {"endpoint": "http://minio.minio:9000", "credentialsSecret": "s3-credentials"},
    }
    spec.update(spec_fields)
    return {
        "apiVersion": "littledata.dev/v1alpha1",
        "kind": "ImageClassifierTraining",
        "metadata": {"name": name, "namespace": "vision", "uid": UID, "generation": 1},
        "spec": spec,
    }


def job_for(body: dict, settings: OperatorSettings = SETTINGS) -> dict:
    return build_job(body, validate_resource(body), settings)


LABELS = {
    "app.kubernetes.io/name": "ict-trainer",
    "app.kubernetes.io/managed-by": "ict-operator",
    "app.kubernetes.io/instance": "cats-dogs",
    "littledata.dev/training": "cats-dogs",
    "littledata.dev/training-uid": UID,
}


def test_the_whole_job_of_a_typical_resource():
    body = resource()
    job = job_for(body)
    env = job["spec"]["template"]["spec"]["containers"][0].pop("env")
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "cats-dogs-train",
            "namespace": "vision",
            "labels": LABELS,
            "annotations": {"littledata.dev/spec-generation": "1"},
            "ownerReferences": [
                {
                    "apiVersion": "littledata.dev/v1alpha1",
                    "kind": "ImageClassifierTraining",
                    "name": "cats-dogs",
                    "uid": UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 2,
            "suspend": False,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "trainer",
                            "operator": "In",
                            "values": [2],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "registry.example/ict-trainer:0.1.0",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["ict"],
                            "args": ["train", "--json", "--spec-env", "ICT_SPEC"],
                            "resources": {
                                "requests": {"cpu": "2", "memory": "8Gi"},
                                "limits": {"cpu": "2", "memory": "8Gi"},
                            },
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                        }
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                },
            },
        },
    }
    manifest = json.loads(env[0]["value"])
    assert env[0]["name"] == "ICT_SPEC"
    assert manifest == {
        "apiVersion": "littledata.dev/v1alpha1",
        "kind": "ImageClassifierTraining",
        "metadata": {"name": "cats-dogs", "namespace": "vision"},
        "spec": body["spec"],
    }
    assert env[1:] == [
        {"name": "ICT_TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"},
        {"name": "ICT_CACHE_DIR", "value": "/scratch/cache"},
        {"name": "HOME", "value": "/scratch"},
        {"name": "TMPDIR", "value": "/scratch"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "AWS_ENDPOINT_URL", "value": "http://minio.minio:9000"},
        {
            "name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}},
        },
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {
                "secretKeyRef": {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}
            },
        },
    ]


def test_the_spec_reaches_the_trainer_unchanged_and_the_builder_leaves_its_input_alone():
    body = resource(training={"epochs": 3}, model={"weights": "s3://w/mobilenet.h5"})
    before = copy.deepcopy(body)
    job = job_for(body)
    assert body == before
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert json.loads(env[0]["value"])["spec"] == before["spec"]


def test_gpus_cpu_memory_and_the_gpu_resource_name():
    body = resource(resources={"gpus": 2, "cpu": "6", "memory": "24Gi"})
    settings = OperatorSettings(trainer_image="t:1", gpu_resource="amd.com/gpu")
    container = job_for(body, settings)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "6", "memory": "24Gi"},
        "limits": {"cpu": "6", "memory": "24Gi", "amd.com/gpu": "2"},
    }


def test_operator_defaults_fill_unset_cpu_and_memory():
    settings = OperatorSettings(trainer_image="t:1", default_cpu="4", default_memory="16Gi")
    container = job_for(resource(), settings)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}


def test_scheduling_suspend_retries_and_queue():
    body = resource(
        scheduling={
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "queueName": "team-a",
            "priorityClassName": "batch-low",
        },
        suspend=True,
        retries={"backoffLimit": 5, "activeDeadlineSeconds": 3600},
    )
    job = job_for(body)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "batch-low"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    assert job["spec"]["suspend"] is True
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["activeDeadlineSeconds"] == 3600


def test_no_secret_means_no_credential_env_and_region_is_passed():
    body = resource(storage={"region": "eu-west-1"})
    env = job_for(body)["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert "AWS_ACCESS_KEY_ID" not in names and "AWS_SECRET_ACCESS_KEY" not in names
    assert "AWS_ENDPOINT_URL" not in names
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in env


@pytest.mark.parametrize(
    "name",
    [
        "a" * 63,
        "a" * 253,
        "finetune-cats-dogs-" + "x" * 60,
        "with.dots.in.name",
    ],
)
def test_job_names_are_short_safe_and_deterministic(name):
    built = job_name(name)
    assert len(built) <= 63
    assert built == job_name(name)
    assert built.endswith("-train")
    assert set(built) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert short_name(name) != short_name(name + "y")


def test_long_names_that_share_a_prefix_get_different_jobs():
    first, second = "p" * 70 + "-one", "p" * 70 + "-two"
    assert job_name(first) != job_name(second)
    labels = job_for(resource(first))["metadata"]["labels"]
    assert len(labels["littledata.dev/training"]) <= 63


def test_short_valid_names_keep_their_spelling():
    assert job_name("cats-dogs") == "cats-dogs-train"


@pytest.mark.parametrize(
    ("field", "spec_fields"),
    [
        ("spec.dataset.uri", {"dataset": {"uri": "/data/cats"}}),
        ("spec.output.uri", {"output": {"uri": "results"}}),
        ("spec.cache.uri", {"cache": {"uri": "/tmp/cache"}}),
        ("spec.model.weights", {"model": {"weights": "weights/mobilenet.h5"}}),
        ("spec.storage.credentialsSecret", {"storage": {"endpoint": "http://minio:9000"}}),
    ],
)
def test_cluster_rules_name_the_field_and_the_fix(field, spec_fields):
    with pytest.raises(SpecError) as refused:
        validate_resource(resource(**spec_fields))
    message = str(refused.value)
    assert f"{field}:" in message
    assert "s3://" in message or "Secret" in message


def test_spec_errors_keep_the_trainers_field_paths():
    with pytest.raises(SpecError, match=r"spec.model.backbone: got 'vgg19'"):
        validate_resource(resource(model={"backbone": "vgg19"}))


def test_imagenet_and_none_weights_are_fine_on_a_cluster():
    for weights in ("imagenet", "none"):
        validate_resource(resource(model={"weights": weights}))


def test_scratch_size_limits_the_emptydir_and_bad_settings_are_refused():
    import argparse

    from ict_operator.settings import add_arguments, settings_from

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["-n", "vision", "--trainer-image", "t:1", "--scratch-size", "50Gi"])
    settings = settings_from(args)
    pod = job_for(resource(), settings)["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {"sizeLimit": "50Gi"}}]
    for bad, complaint in (
        (["--scratch-size", "lots"], "--scratch-size: got 'lots'"),
        (["--default-memory", "8 GB"], "--default-memory: got '8 GB'"),
    ):
        wrong = parser.parse_args(["-n", "vision", "--trainer-image", "t:1", *bad])
        with pytest.raises(ValueError, match=complaint):
            settings_from(wrong)
