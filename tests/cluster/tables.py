"""Server-side Table output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).

kubectl asks for tables for `get`; the server picks the columns: the CRD's
additionalPrinterColumns for custom resources (dates rendered as ages, as the API server
does), a short built-in set for the resources tests look at, Name + Age otherwise.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable

from tests.cluster.resources import Column, ResourceInfo


def human_age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's HumanDuration of the time since `timestamp`."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{days}d"


_STEP = re.compile(r"\.([\w-]+)|\[(\d+)\]|\[\?\(@\.([\w.-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]")


def json_path(obj: object, path: str) -> object:
    """The value at a printer-column JSONPath: `.a.b`, `[0]`, `[?(@.type=="Ready")]`."""
    path = path.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    value = obj
    for match in _STEP.finditer(path):
        key, index, filter_key, filter_value = match.groups()
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        elif index is not None:
            value = (
                value[int(index)] if isinstance(value, list) and len(value) > int(index) else None
            )
        else:
            items = value if isinstance(value, list) else []
            found = [i for i in items if str(json_path(i, "." + filter_key)) == filter_value]
            value = found[0] if found else None
        if value is None:
            return None
    return value


def _cell(column: Column, obj: dict) -> object:
    value = json_path(obj, column.json_path)
    if value is None:
        return None
    if column.type == "date":
        return human_age(str(value))
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _pod_status(pod: dict) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for status in pod.get("status", {}).get("containerStatuses", []):
        for state in ("waiting", "terminated"):
            reason = status.get("state", {}).get(state, {}).get("reason")
            if reason:
                return reason
    return pod.get("status", {}).get("reason") or pod.get("status", {}).get("phase", "Pending")


def _pod_ready(pod: dict) -> str:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    ready = sum(bool(s.get("ready")) for s in statuses)
    return f"{ready}/{len(pod.get('spec', {}).get('containers', []))}"


def _job_status(job: dict) -> str:
    conditions = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", []) or []}
    for name in ("Complete", "Failed", "Suspended"):
        if conditions.get(name) == "True":
            return name
    return "Running"


def _job_duration(job: dict) -> str:
    status = job.get("status", {})
    if not status.get("startTime"):
        return ""
    if not status.get("completionTime"):
        return human_age(status["startTime"])
    end = datetime.datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    return human_age(status["startTime"], end)


def _event_object(event: dict) -> str:
    involved = event.get("involvedObject", {})
    return f"{involved.get('kind', '').lower()}/{involved.get('name', '')}"


Cells = list[tuple[str, int, Callable[[dict], object]]]  # (header, priority, cell)
_AGE = ("Age", 0, lambda o: human_age(o["metadata"].get("creationTimestamp")))
BUILTIN: dict[tuple[str, str], Cells] = {
    ("", "pods"): [
        ("Ready", 0, _pod_ready),
        ("Status", 0, _pod_status),
        (
            "Restarts",
            0,
            lambda p: sum(
                s.get("restartCount", 0) for s in p.get("status", {}).get("containerStatuses", [])
            ),
        ),
        _AGE,
        ("IP", 1, lambda p: p.get("status", {}).get("podIP", "<none>")),
        ("Node", 1, lambda p: p.get("spec", {}).get("nodeName", "<none>")),
    ],
    ("batch", "jobs"): [
        ("Status", 0, _job_status),
        (
            "Completions",
            0,
            lambda j: (
                f"{j.get('status', {}).get('succeeded', 0)}/{j['spec'].get('completions', 1)}"
            ),
        ),
        ("Duration", 0, _job_duration),
        _AGE,
        (
            "Containers",
            1,
            lambda j: ",".join(c["name"] for c in j["spec"]["template"]["spec"]["containers"]),
        ),
        (
            "Images",
            1,
            lambda j: ",".join(
                c.get("image", "") for c in j["spec"]["template"]["spec"]["containers"]
            ),
        ),
    ],
    ("", "namespaces"): [("Status", 0, lambda n: n.get("status", {}).get("phase", "")), _AGE],
    ("", "nodes"): [("Status", 0, lambda n: "Ready"), ("Roles", 0, lambda n: "<none>"), _AGE],
    ("", "events"): [
        ("Type", 0, lambda e: e.get("type", "")),
        ("Reason", 0, lambda e: e.get("reason", "")),
        ("Object", 0, _event_object),
        ("Message", 0, lambda e: e.get("message", "")),
    ],
    ("", "secrets"): [
        ("Type", 0, lambda s: s.get("type", "Opaque")),
        ("Data", 0, lambda s: len(s.get("data") or {})),
        _AGE,
    ],
    ("", "configmaps"): [("Data", 0, lambda c: len(c.get("data") or {})), _AGE],
}


def _columns(info: ResourceInfo) -> Cells:
    if info.columns is not None:
        return [(c.name, c.priority, lambda o, c=c: _cell(c, o)) for c in info.columns]
    return BUILTIN.get(info.key, [_AGE])


def table(info: ResourceInfo, objects: list[dict], resource_version: str, full: bool) -> dict:
    """A meta.k8s.io/v1 Table; rows carry the object (`full`) or its metadata only."""
    columns = [("Name", 0, lambda o: o["metadata"]["name"]), *_columns(info)]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": header,
                "type": "string",
                "format": "name" if header == "Name" else "",
                "description": header,
                "priority": priority,
            }
            for header, priority, _ in columns
        ],
        "rows": [
            {
                "cells": [cell(obj) for _, _, cell in columns],
                "object": obj
                if full
                else {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
            for obj in objects
        ],
    }
