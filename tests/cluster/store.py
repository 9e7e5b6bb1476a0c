"""The object store and the API semantics kmock 0.8 lacks.

uid, resourceVersion (one monotonic counter, as etcd's revision), creationTimestamp,
generation (bumped on spec changes only), the status subresource kept apart, optimistic
concurrency (409 Conflict), finalizers + deletionTimestamp, owner-reference garbage collection
(recursive), namespace and CRD lifecycles, and an event history that watches replay from any
resourceVersion. Every method is synchronous and runs on the cluster's event loop thread, so
no lock is needed: a mutation and its events happen between two awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.cluster import defaults, patches
from tests.cluster.resources import Registry, ResourceInfo, from_crd

ObjKey = tuple[str | None, str]  # (namespace, name)


class ApiError(Exception):
    """An error answered as a standard `Status` body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(info: ResourceInfo, name: str) -> ApiError:
    details = {"name": name, "group": info.group, "kind": info.plural}
    return ApiError(404, "NotFound", f'{_qualified(info)} "{name}" not found', details)


def _qualified(info: ResourceInfo) -> str:
    return f"{info.plural}.{info.group}" if info.group else info.plural


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Change:
    """One stored change, as a watch streams it."""

    type: str  # ADDED, MODIFIED, DELETED
    info: ResourceInfo
    obj: dict
    old: dict | None
    rv: int


@dataclass(eq=False)  # hashable by identity: watchers live in a set
class Watcher:
    info: ResourceInfo
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class Store:
    """All objects of all resources, keyed by (group, plural) then (namespace, name)."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.objects: dict[tuple[str, str], dict[ObjKey, dict]] = {}
        self.revision = 0
        self.history: list[Change] = []
        self.watchers: set[Watcher] = set()
        # In-process subscribers (job controller, kubelet): called on every change.
        self.listeners: list[Callable[[Change], None]] = []
        for namespace in ("default", "kube-system", "kube-public"):
            self.create(self.info("", "namespaces"), None, {"metadata": {"name": namespace}})

    # -- lookups ---------------------------------------------------------------------------
    def info(self, group: str, plural: str) -> ResourceInfo:
        info = self.registry.get(group, plural)
        if info is None:
            raise ApiError(404, "NotFound", f"the server could not find the resource {plural!r}")
        return info

    def _bucket(self, info: ResourceInfo) -> dict[ObjKey, dict]:
        return self.objects.setdefault(info.key, {})

    def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict:
        obj = self._bucket(info).get((namespace if info.namespaced else None, name))
        if obj is None:
            raise not_found(info, name)
        return copy.deepcopy(obj)

    def find(self, info: ResourceInfo, namespace: str | None, name: str) -> dict | None:
        try:
            return self.get(info, namespace, name)
        except ApiError:
            return None

    def list(
        self, info: ResourceInfo, namespace: str | None, match: Callable[[dict], bool] = bool
    ) -> list[dict]:
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self._bucket(info).items(), key=lambda i: str(i[0]))
            if (namespace is None or ns == namespace) and match(obj)
        ]

    # -- writes ----------------------------------------------------------------------------
    def _emit(self, type_: str, info: ResourceInfo, obj: dict, old: dict | None) -> None:
        change = Change(type_, info, copy.deepcopy(obj), old, self.revision)
        self.history.append(change)
        for watcher in list(self.watchers):
            if watcher.info.key == info.key:
                watcher.queue.put_nowait(change)
        for listener in list(self.listeners):
            listener(change)

    def _bump(self, obj: dict) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)

    def create(
        self, info: ResourceInfo, namespace: str | None, body: dict, dry_run: bool = False
    ) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", f"the body must be an object, got {body!r}")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent "
                    f"on the request: {meta['namespace']!r} vs {namespace!r}",
                )
            meta["namespace"] = namespace = namespace or meta.get("namespace") or "default"
            if self.find(self.info("", "namespaces"), None, namespace) is None:
                raise not_found(self.info("", "namespaces"), namespace)
        else:
            meta.pop("namespace", None)
            namespace = None
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{info.kind}: metadata.name: Required value")
        if (namespace, name) in self._bucket(info):
            details = {"name": name, "group": info.group, "kind": info.plural}
            raise ApiError(
                409, "AlreadyExists", f'{_qualified(info)} "{name}" already exists', details
            )
        obj["apiVersion"], obj["kind"] = info.api_version(), info.kind
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(), generation=1)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(key, None)
        defaults.on_create(info, obj)
        if info.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register(obj)
        if dry_run:
            return obj
        self._bump(obj)
        self._bucket(info)[(namespace, name)] = obj
        self._emit("ADDED", info, obj, None)
        return copy.deepcopy(obj)

    def _register(self, crd: dict) -> None:
        try:
            resource = from_crd(crd)
        except (KeyError, ValueError) as exc:
            raise ApiError(422, "Invalid", f"invalid CustomResourceDefinition: {exc!r}") from exc
        self.registry.add(resource)

    def update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        change: Callable[[dict], dict],
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        """Apply `change` to a copy of the stored object and store it with API semantics."""
        namespace = namespace if info.namespaced else None
        old = self.get(info, namespace, name)
        new = change(copy.deepcopy(old))
        if not isinstance(new, dict):
            raise ApiError(400, "BadRequest", f"the result must be an object, got {new!r}")
        sent_rv = (new.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_qualified(info)} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                {"name": name, "group": info.group, "kind": info.plural},
            )
        new = self._keep_apart(info, old, new, subresource)
        if new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if self._spec(new) != self._spec(old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if info.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register(new)
        if dry_run:
            return new
        self._bump(new)
        self._bucket(info)[(namespace, name)] = new
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(info, new)
        else:
            self._emit("MODIFIED", info, new, old)
        return copy.deepcopy(new)

    @staticmethod
    def _spec(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status")}

    @staticmethod
    def _keep_apart(info: ResourceInfo, old: dict, new: dict, subresource: str | None) -> dict:
        """Status writes change only status; other writes leave status alone (if a subresource)."""
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            return result
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        meta = new.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "name", "namespace", "generation"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(key, None)
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        if info.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return new

    def patch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        content_type: str,
        body: object,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        def change(obj: dict) -> dict:
            try:
                return patches.apply_patch(content_type, obj, body)
            except patches.PatchError as exc:
                reason = {422: "Invalid", 415: "UnsupportedMediaType"}.get(exc.code, "BadRequest")
                raise ApiError(exc.code, reason, str(exc)) from exc

        apply = content_type.startswith("application/apply-patch")
        if apply and self.find(info, namespace, name) is None:
            return self.create(info, namespace, dict(body), dry_run)  # type: ignore[arg-type]
        return self.update(info, namespace, name, change, subresource, dry_run)

    def replace(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        body: dict,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise ApiError(
                400, "BadRequest", f"the name of the object ({body_name!r}) does not match {name!r}"
            )
        return self.update(
            info, namespace, name, lambda _: copy.deepcopy(body), subresource, dry_run
        )

    def delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        propagation: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        obj = self.get(info, namespace, name)
        if dry_run:
            return obj
        if propagation == "Orphan":
            self._orphan(obj["metadata"]["uid"])
        if obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            old = copy.deepcopy(obj)
            obj["metadata"].update(deletionTimestamp=now_iso(), deletionGracePeriodSeconds=0)
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self._bump(obj)
            self._bucket(info)[(obj["metadata"].get("namespace"), name)] = obj
            self._emit("MODIFIED", info, obj, old)
            return copy.deepcopy(obj)
        self._remove(info, obj)
        return obj

    def _remove(self, info: ResourceInfo, obj: dict) -> None:
        meta = obj["metadata"]
        self._bucket(info).pop((meta.get("namespace"), meta["name"]), None)
        self._bump(obj)
        self._emit("DELETED", info, obj, None)
        if info.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            removed = self.registry.get(obj["spec"]["group"], obj["spec"]["names"]["plural"])
            if removed is not None:
                for item in self.list(removed, None):
                    self._delete_quietly(removed, item)
                self.registry.remove(removed.key)
        if info.key == ("", "namespaces"):
            for other in self.registry:
                if other.namespaced:
                    for item in self.list(other, meta["name"]):
                        self._delete_quietly(other, item)
        self._collect_garbage(meta["uid"])

    def _delete_quietly(self, info: ResourceInfo, obj: dict) -> None:
        with contextlib.suppress(ApiError):  # already gone through another owner
            self.delete(info, obj["metadata"].get("namespace"), obj["metadata"]["name"])

    def _dependents(self, uid: str) -> list[tuple[ResourceInfo, dict]]:
        return [
            (info, obj)
            for info in self.registry
            for obj in self.list(info, None)
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))
        ]

    def _uid_exists(self, uid: str) -> bool:
        return any(o["metadata"]["uid"] == uid for b in self.objects.values() for o in b.values())

    def _collect_garbage(self, uid: str) -> None:
        """The garbage collector: dependents whose owners are all gone are deleted (background)."""
        for info, obj in self._dependents(uid):
            refs = obj["metadata"].get("ownerReferences", [])
            if all(r.get("uid") == uid or not self._uid_exists(r["uid"]) for r in refs):
                self._delete_quietly(info, obj)

    def _orphan(self, uid: str) -> None:
        for info, obj in self._dependents(uid):
            meta = obj["metadata"]

            def drop(o: dict) -> dict:
                refs = o["metadata"].get("ownerReferences", [])
                o["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                return o

            self.update(info, meta.get("namespace"), meta["name"], drop)
