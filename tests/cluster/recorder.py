"""Events as the kubelet and the controllers post them (core/v1, what `kubectl describe` shows)."""

from __future__ import annotations

import secrets

from tests.cluster.store import Store, now_iso


def record_event(
    store: Store, involved: dict, reason: str, message: str, type_: str = "Normal", source: str = ""
) -> None:
    meta = involved["metadata"]
    namespace = meta.get("namespace") or "default"
    if store.find(store.info("", "namespaces"), None, namespace) is None:
        return  # the namespace is being torn down; nothing reads this event any more
    now = now_iso()
    store.create(
        store.info("", "events"),
        namespace,
        {
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved.get("kind", ""),
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": source},
            "reportingComponent": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        },
    )
