"""Defaulting on create, as the API server's defaulters do (the fields controllers rely on)."""

from __future__ import annotations

import base64

from tests.cluster.resources import ResourceInfo


def _pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("resources", {})


def _job(obj: dict) -> None:
    spec, meta = obj.setdefault("spec", {}), obj["metadata"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("suspend", False)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    _pod_spec(template.setdefault("spec", {}))
    if not spec.get("manualSelector"):
        labels = {
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "job-name": meta["name"],
        }
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}}
    obj.setdefault("status", {})


def _pod(obj: dict) -> None:
    _pod_spec(obj.setdefault("spec", {}))
    requests_any = any(c.get("resources") for c in obj["spec"].get("containers", []))
    obj["status"] = {"phase": "Pending", "qosClass": "Burstable" if requests_any else "BestEffort"}


def _namespace(obj: dict) -> None:
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
        "name"
    ]
    obj["status"] = {"phase": "Active"}


def _crd(obj: dict) -> None:
    names = obj.get("spec", {}).get("names", {})
    accepted = {**names, "singular": names.get("singular") or names.get("kind", "").lower()}
    accepted.setdefault("listKind", f"{names.get('kind', '')}List")
    obj["status"] = {
        "acceptedNames": accepted,
        "storedVersions": [v["name"] for v in obj["spec"].get("versions", []) if v.get("storage")],
        "conditions": [
            {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": None}
            for t, r, m in [
                ("NamesAccepted", "NoConflicts", "no conflicts found for the names"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ]
        ],
    }
    for condition in obj["status"]["conditions"]:
        condition["lastTransitionTime"] = obj["metadata"]["creationTimestamp"]


def _secret(obj: dict) -> None:
    obj.setdefault("type", "Opaque")
    for key, value in (obj.pop("stringData", None) or {}).items():
        obj.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()


DEFAULTERS = {
    ("batch", "jobs"): _job,
    ("", "pods"): _pod,
    ("", "namespaces"): _namespace,
    ("", "secrets"): _secret,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}


def on_create(info: ResourceInfo, obj: dict) -> None:
    defaulter = DEFAULTERS.get(info.key)
    if defaulter is not None:
        defaulter(obj)
