"""The HTTP layer: kmock's server and request parsing, routed onto the Store.

kmock (0.8) runs the aiohttp server on a free port and parses requests; this handler routes
every Kubernetes path itself (kmock's own emulator lacks the semantics in store.py, and its
discovery gives the core group the groupVersion `/v1`, which Go clients reject). Paths this
handler does not know fall through to kmock's reactions, so a test can still inject one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering

from tests.cluster import protobuf, selectors, tables
from tests.cluster.resources import ResourceInfo
from tests.cluster.store import ApiError, Change, Store, Watcher

LogSource = Callable[[str, str, dict[str, str]], AsyncIterator[bytes]]
BOOKMARK_EVERY_S = 5.0
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))(?P<rest>/.*)?$"
)


@attrs.frozen
class Target:
    """What a request path names."""

    info: ResourceInfo
    version: str
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(payload: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(payload, status=status)


def _parse_body(request: rendering.Request) -> Any:
    content_type = request.headers.get("Content-Type", "")
    if "protobuf" in content_type:
        try:
            return protobuf.decode_object(request.body)
        except ValueError as exc:
            raise ApiError(415, "UnsupportedMediaType", f"{content_type}: {exc}") from exc
    if not request.body:
        return None
    try:
        if "yaml" in content_type:
            return yaml.safe_load(request.body)
        return json.loads(request.body)
    except ValueError as exc:
        message = f"cannot parse the body as {content_type!r}: {exc}"
        raise ApiError(400, "BadRequest", message) from exc


def request_kind(method: str, params: dict[str, str], target: Target | None) -> tuple[str, str]:
    """(verb, resource) as Kubernetes' audit log names them: ("watch", "pods"),
    ("patch", "imageclassifiertrainings/status"), ("get", "pods/log"); discovery is one kind."""
    if target is None:
        return method.lower(), "discovery"
    resource = target.info.plural + (f"/{target.subresource}" if target.subresource else "")
    if method == "GET" and params.get("watch") in ("true", "1"):
        return "watch", resource
    unnamed = {"GET": "list", "DELETE": "deletecollection"}
    verbs = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if target.name is None and method in unnamed:
        return unnamed[method], resource
    return verbs.get(method, method.lower()), resource


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesScaffold):
    store: Store
    logs: LogSource | None = None  # the kubelet's log reader, set once it runs
    # Requests served, by (client, verb, resource); the client is the User-Agent's product
    # ("kopf", "OpenAPI-Generator", "kubectl"). Benchmarks read it through Cluster.requests().
    counts: collections.Counter[tuple[str, str, str]] = attrs.field(factory=collections.Counter)

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's own parsing fails on some paths (`/api/v1/namespaces`); this server routes
        # by itself, so it records the request without kmock's Kubernetes interpretation.
        request = rendering.Request(
            id=len(self._requests), raw_request=raw, url=raw.url, method=raw.method,
            params=dict(raw.query), headers=dict(raw.headers), body=await raw.read(),
        )  # fmt: skip
        self._requests.append(request)
        try:
            return await self._handle(request)
        except ApiError as exc:
            return _json(exc.status(), exc.code)
        except Exception as exc:
            return await self._render_error(exc)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        try:
            discovery = self._discovery(path)
            if discovery is not None:
                self._count(request, None)
                return _json(discovery)
            target = self._target(path)
            self._count(request, target)
            if target is None:
                return await super()._handle(request)
            return await self._serve(request, target)
        except ApiError as exc:
            return _json(exc.status(), exc.code)

    def _count(self, request: rendering.Request, target: Target | None) -> None:
        client = request.headers.get("User-Agent", "").split("/")[0] or "unknown"
        verb, resource = request_kind(request.method.value.upper(), request.params, target)
        self.counts[client, verb, resource] += 1

    def _discovery(self, path: str) -> dict | None:
        registry = self.store.registry
        if path == "/version":
            return {
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.0-emulated",
                "platform": "linux/amd64",
            }
        if path in ("/openapi/v2", "/openapi/v3"):
            raise ApiError(404, "NotFound", f"{path} is not served: pass --validate=false")
        found: dict | None
        if path == "/api":
            return registry.api_versions()
        if path == "/apis":
            return registry.api_group_list()
        if path == "/api/v1":
            found = registry.api_resource_list("", "v1")
        elif match := re.fullmatch(r"/apis/([^/]+)", path):
            found = registry.api_group(match.group(1))
        elif match := re.fullmatch(r"/apis/([^/]+)/([^/]+)", path):
            found = registry.api_resource_list(match.group(1), match.group(2))
        else:
            return None
        if found is None:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource {path!r}"
            )
        return found

    def _target(self, path: str) -> Target | None:
        match = _PATH.match(path)
        if match is None or not match.group("rest"):
            return None
        group, version = ("", "v1") if match.group("core") else match.group("group", "version")
        parts = match.group("rest").strip("/").split("/")
        namespace = None
        if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] not in ("status", "finalize"):
            namespace, parts = parts[1], parts[2:]
        plural, name, subresource = [*parts, None, None][:3]
        info = self.store.registry.lookup(group, version, plural)
        if info is None:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource {path!r}"
            )
        return Target(info, version, namespace, name, subresource)

    async def _serve(
        self, request: rendering.Request, target: Target
    ) -> aiohttp.web.StreamResponse:
        method, params = request.method.value.upper(), request.params
        info, store = target.info, self.store
        dry_run = bool(params.get("dryRun"))
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(request, target)
        if method == "GET" and target.subresource == "log":
            return await self._log(request, target)
        if method == "GET" and target.name is None:
            match = self._matcher(params)
            items = store.list(info, target.namespace, match)
            return self._list(request, target, items)
        if method == "GET":
            obj = store.get(info, target.namespace, target.name)
            if self._wants_table(request):
                return _json(tables.table(info, [obj], str(store.revision), False))
            return self._obj(target, obj)
        body = _parse_body(request)
        if method == "POST" and target.subresource == "eviction":
            store.delete(info, target.namespace, target.name)
            return _json({"kind": "Status", "apiVersion": "v1", "status": "Success"}, 201)
        if method == "POST" and target.name is None:
            return self._obj(target, store.create(info, target.namespace, body, dry_run), 201)
        if method == "PUT" and target.name:
            obj = store.replace(
                info, target.namespace, target.name, body, target.subresource, dry_run
            )
            return self._obj(target, obj)
        if method == "PATCH" and target.name:
            content_type = request.headers.get("Content-Type", "application/merge-patch+json")
            obj = store.patch(
                info, target.namespace, target.name, content_type, body, target.subresource, dry_run
            )
            return self._obj(target, obj)
        if method == "DELETE":
            options = body if isinstance(body, dict) else {}
            propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
            if target.name is None:
                items = store.list(info, target.namespace, self._matcher(params))
                for item in items:
                    store.delete(info, item["metadata"].get("namespace"), item["metadata"]["name"])
                return self._list(request, target, items)
            obj = store.delete(info, target.namespace, target.name, propagation, dry_run)
            return self._obj(target, obj)
        raise ApiError(
            405, "MethodNotAllowed", f"{method} is not supported on {request.url.path!r}"
        )

    # -- rendering ----------------------------------------------------------------------------
    @staticmethod
    def _wants_table(request: rendering.Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    @staticmethod
    def _matcher(params: dict[str, str]) -> Callable[[dict], bool]:
        try:
            labels = selectors.label_matcher(params.get("labelSelector"))
            fields = selectors.field_matcher(params.get("fieldSelector"))
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc
        return lambda obj: labels(obj) and fields(obj)

    @staticmethod
    def _versioned(target: Target, obj: dict) -> dict:
        obj["apiVersion"] = target.info.api_version(target.version)
        return obj

    def _obj(self, target: Target, obj: dict, status: int = 200) -> aiohttp.web.Response:
        return _json(self._versioned(target, obj), status)

    def _list(
        self, request: rendering.Request, target: Target, items: list[dict]
    ) -> aiohttp.web.Response:
        revision = str(self.store.revision)
        items = [self._versioned(target, item) for item in items]
        if self._wants_table(request):
            full = request.params.get("includeObject") == "Object"
            return _json(tables.table(target.info, items, revision, full))
        return _json(
            {
                "kind": f"{target.info.kind}List",
                "apiVersion": target.info.api_version(target.version),
                "metadata": {"resourceVersion": revision},
                "items": items,
            }
        )

    # -- streams ------------------------------------------------------------------------------
    async def _stream(
        self, request: rendering.Request, content_type: str
    ) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        assert request._raw_request is not None
        await response.prepare(request._raw_request)
        return response

    def _watch_events(
        self, request: rendering.Request, target: Target, watcher: Watcher
    ) -> list[dict]:
        """The events a watch starts with: the current objects, or a replay since its version."""
        params, store, info = request.params, self.store, target.info
        since = params.get("resourceVersion") or "0"
        initial = params.get("sendInitialEvents") == "true"
        match = self._scope_matcher(target, params)
        if since == "0" or initial or not since.isdigit():
            events = [
                {"type": "ADDED", "object": o} for o in store.list(info, target.namespace, match)
            ]
        else:
            replay = [c for c in store.history if c.rv > int(since) and c.info.key == info.key]
            events = [e for c in replay for e in [self._event(c, match)] if e]
        if initial and params.get("allowWatchBookmarks") == "true":
            events.append(self._bookmark(target, {"k8s.io/initial-events-end": "true"}))
        store.watchers.add(watcher)  # in the same loop step: no change is missed or doubled
        return events

    def _scope_matcher(self, target: Target, params: dict[str, str]) -> Callable[[dict], bool]:
        match = self._matcher(params)
        namespace, name = target.namespace, target.name

        def scoped(obj: dict) -> bool:
            meta = obj["metadata"]
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            return (name is None or meta["name"] == name) and match(obj)

        return scoped

    @staticmethod
    def _event(change: Change, match: Callable[[dict], bool]) -> dict | None:
        now = match(change.obj)
        before = change.old is not None and match(change.old)
        if change.type == "MODIFIED" and now != before:
            return {"type": "ADDED" if now else "DELETED", "object": change.obj}
        return {"type": change.type, "object": change.obj} if now else None

    def _bookmark(self, target: Target, annotations: dict | None = None) -> dict:
        meta: dict = {"resourceVersion": str(self.store.revision)}
        if annotations:
            meta["annotations"] = annotations
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": target.info.kind,
                "apiVersion": target.info.api_version(target.version),
                "metadata": meta,
            },
        }

    async def _watch(
        self, request: rendering.Request, target: Target
    ) -> aiohttp.web.StreamResponse:
        params = request.params
        watcher = Watcher(target.info)
        events = self._watch_events(request, target, watcher)
        match = self._scope_matcher(target, params)
        table = self._wants_table(request)
        deadline = time.monotonic() + float(params.get("timeoutSeconds") or 3600)
        bookmarks = params.get("allowWatchBookmarks") == "true"
        try:
            response = await self._stream(request, "application/json")
            while True:
                for event in events:
                    if event["type"] != "BOOKMARK":
                        obj = self._versioned(target, event["object"])
                        if table:
                            obj = tables.table(target.info, [obj], str(self.store.revision), False)
                        event = {"type": event["type"], "object": obj}
                    await response.write(json.dumps(event).encode() + b"\n")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    change = await asyncio.wait_for(
                        watcher.queue.get(), min(remaining, BOOKMARK_EVERY_S)
                    )
                except TimeoutError:
                    events = [self._bookmark(target)] if bookmarks else []
                    continue
                event = self._event(change, match)
                events = [event] if event else []
            await response.write_eof()
            return response
        except (ConnectionError, asyncio.CancelledError):
            raise
        finally:
            self.store.watchers.discard(watcher)

    async def _log(self, request: rendering.Request, target: Target) -> aiohttp.web.StreamResponse:
        pod = self.store.get(target.info, target.namespace, target.name or "")
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        container = request.params.get("container") or (
            containers[0] if len(containers) == 1 else ""
        )
        if container not in containers:
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {target.name}, "
                f"choose one of: {containers}"
                if not container
                else f"container {container} is not valid for pod {target.name}",
            )
        if self.logs is None:
            raise ApiError(503, "ServiceUnavailable", "no kubelet runs in this cluster")
        chunks = aiter(
            self.logs(
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                {**request.params, "container": container},
            )
        )
        first = await anext(chunks, b"")  # raises ApiError before the headers if not started
        response = await self._stream(request, "text/plain")
        with contextlib.suppress(ConnectionError):
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
        return response
