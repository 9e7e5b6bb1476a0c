"""The one module that talks to the Kubernetes API (besides kopf's own watching and patching).

Blocking calls of the official client; the async handlers run them in threads. The operator
never reads Secrets: the trainer pod gets its credentials from secretKeyRefs.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Iterator
from functools import cache
from typing import Any

from ict_api.spec import API_GROUP, API_VERSION, KIND, PLURAL

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"


class JobConflict(RuntimeError):
    """A Job of that name exists and belongs to something else."""


@cache
def _api():
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    client = kubernetes.client.ApiClient()
    return (
        kubernetes.client.BatchV1Api(client),
        kubernetes.client.CoreV1Api(client),
        kubernetes.client.CustomObjectsApi(client),
    )


def connect() -> None:
    """Imports the client and reads the configuration now (about 0.5 s of CPU), at startup,
    rather than in the handler of the first resources, which would wait for it."""
    _api()


def _status_of(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def ensure_job(job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Creates the Job, or returns the one already there (a restarted operator); (job, created).

    Raises JobConflict when a Job of that name is owned by another resource (e.g. one of the
    same name that was deleted and whose Job is still being garbage-collected).
    """
    batch, _, _ = _api()
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    try:
        created = batch.create_namespaced_job(namespace, job)
        return batch.api_client.sanitize_for_serialization(created), True
    except Exception as exc:
        if _status_of(exc) != 409:
            raise
    existing = read_job(namespace, name)
    if existing is None:  # deleted between the two calls: the caller retries
        raise JobConflict(f"Job {namespace}/{name} vanished while it was being adopted")
    owners = [ref.get("uid") for ref in existing["metadata"].get("ownerReferences") or []]
    wanted = job["metadata"]["ownerReferences"][0]["uid"]
    if wanted not in owners:
        raise JobConflict(
            f"Job {namespace}/{name} exists and belongs to {owners or 'nobody'}, not to this "
            "resource; it is probably the Job of a deleted resource of the same name, still "
            "being removed. Retrying."
        )
    return existing, False


def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    batch, _, _ = _api()
    try:
        job = batch.read_namespaced_job(name, namespace)
    except Exception as exc:
        if _status_of(exc) == 404:
            return None
        raise
    return batch.api_client.sanitize_for_serialization(job)


def set_job_suspend(namespace: str, name: str, suspend: bool) -> None:
    batch, _, _ = _api()
    batch.patch_namespaced_job(
        name, namespace, {"spec": {"suspend": suspend}}, _content_type=MERGE_PATCH
    )


def patch_status(namespace: str, name: str, patch: dict[str, Any]) -> None:
    """A JSON merge patch of the resource's status subresource."""
    _, _, custom = _api()
    custom.patch_namespaced_custom_object_status(
        API_GROUP,
        API_VERSION,
        namespace,
        PLURAL,
        name,
        {"status": patch},
        _content_type=MERGE_PATCH,
    )


def post_event(body: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the resource (what `kubectl describe` lists)."""
    _, core, _ = _api()
    meta = body["metadata"]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    core.create_namespaced_event(
        meta["namespace"],
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body.get("apiVersion", f"{API_GROUP}/{API_VERSION}"),
                "kind": body.get("kind", KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "ict-operator"},
            "reportingComponent": "ict-operator",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        },
    )


class LogStream:
    """A pod's log, followed until the container ends or `close()` is called."""

    def __init__(self, namespace: str, pod: str, container: str):
        _, core, _ = _api()
        self._response = core.read_namespaced_pod_log(
            pod, namespace, container=container, follow=True, _preload_content=False
        )

    def lines(self) -> Iterator[bytes]:
        pending = b""
        try:
            for chunk in self._response.stream(64 * 1024, decode_content=True):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                yield from complete
        except Exception as exc:  # closed from another thread, or the connection dropped
            log.debug("log stream ended: %s", exc)
        if pending:
            yield pending

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed
            self._response.close()
