"""The PATCH flavours the API server accepts, as pure functions on dicts.

- JSON merge patch (RFC 7386): kopf, `kubectl patch --type=merge`, client-side apply of CRs.
- Strategic merge patch: client-side `kubectl apply`/`patch` of built-ins. Lists of objects
  merge by the key Kubernetes declares for them (containers by name, env by name...);
  `$patch`, `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList` directives are
  honoured in their common forms. Keys are matched by field name, not by schema path.
- JSON patch (RFC 6902): a failed `test` is a 422, as kopf's finalizer removal expects.
- Server-side apply: the applied fields are merged like a strategic patch; fields that a
  manager stopped applying are NOT removed (no managedFields bookkeeping).
"""

from __future__ import annotations

import copy
import json

import jsonpatch
import jsonpointer

# patchMergeKey of the list fields that merge instead of being replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# Primitive lists with patchStrategy merge: union instead of replace.
MERGE_PRIMITIVES = {"finalizers"}


class PatchError(ValueError):
    """A patch that cannot apply; `code` is the HTTP status the server answers with."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def merge_patch(target: object, patch: object) -> object:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_list(field: str, target: list, patch: list, order: list | None) -> list:
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(i, dict) for i in patch):
        if field in MERGE_PRIMITIVES:
            return target + [i for i in patch if i not in target]
        return [strategic_merge(None, i) for i in patch]
    result = [copy.deepcopy(i) for i in target]
    for item in patch:
        directive = item.get("$patch")
        index = next((n for n, t in enumerate(result) if t.get(key) == item.get(key)), None)
        if directive == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(strategic_merge(None, item))
        else:
            result[index] = strategic_merge(result[index], item)
    if order:
        rank = {o.get(key): n for n, o in enumerate(order) if isinstance(o, dict)}
        result.sort(key=lambda i: rank.get(i.get(key), len(rank)))
    return result


def strategic_merge(target: object, patch: object) -> object:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [i for i in result.get(name, []) if i not in value]
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            order = patch.get(f"$setElementOrder/{key}")
            result[key] = _merge_list(key, result[key], value, order)
        elif isinstance(value, list):
            result[key] = _merge_list(key, [], value, None)
        else:
            result[key] = strategic_merge(result.get(key), value)
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def json_patch(target: dict, operations: list) -> dict:
    try:
        return jsonpatch.apply_patch(target, operations)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchError(
            f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchError(f"the server rejected our request: {exc}") from exc


MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
APPLY_CBOR = "application/apply-patch+cbor"


def apply_patch(content_type: str, target: dict, body: object) -> dict:
    """The patched object; raises PatchError with the HTTP status to answer with."""
    kind = content_type.split(";")[0].strip()
    if kind == JSON:
        if not isinstance(body, list):
            raise PatchError(f"a JSON patch must be a list of operations, got {body!r}", 400)
        return json_patch(target, body)
    if not isinstance(body, dict):
        raise PatchError(f"a {kind} patch must be an object, got {json.dumps(body)[:200]}", 400)
    if kind == MERGE:
        return merge_patch(target, body)  # type: ignore[return-value]
    if kind in (STRATEGIC, APPLY):
        return strategic_merge(target, body)  # type: ignore[return-value]
    raise PatchError(f"unsupported patch type {content_type!r}", 415)
