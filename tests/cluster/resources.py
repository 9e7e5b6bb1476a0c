"""What the emulated API server serves: built-in resources, CRD-registered ones, discovery.

A resource is identified by (group, plural); every served version maps to the same stored
objects (no conversion: a CRD's versions share one schema here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Column:
    """One printer column: `kubectl get` header, JSONPath into the object, OpenAPI type."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""
    format: str = ""


@dataclass
class ResourceInfo:
    """A served resource, as discovery describes it."""

    group: str  # "" for the core group
    versions: list[str]  # served versions, preferred first
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""  # defaults to kind.lower()
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    subresources: list[str] = field(default_factory=list)  # e.g. ["status", "log"]
    columns: list[Column] | None = None  # CRD printer columns; None: the built-in table
    crd_name: str | None = None  # set for resources a CRD registered

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def status_subresource(self) -> bool:
        return "status" in self.subresources

    def api_version(self, version: str | None = None) -> str:
        version = version or self.versions[0]
        return f"{self.group}/{version}" if self.group else version


def _core(plural: str, kind: str, **kwargs) -> ResourceInfo:
    return ResourceInfo("", ["v1"], plural, kind, **kwargs)


def builtin_resources() -> list[ResourceInfo]:
    """The built-in resources an operator, kubectl and helm touch."""
    status = ["status"]
    return [
        _core("namespaces", "Namespace", namespaced=False, short_names=["ns"], subresources=status),
        _core("nodes", "Node", namespaced=False, short_names=["no"], subresources=status),
        _core(
            "pods",
            "Pod",
            short_names=["po"],
            categories=["all"],
            subresources=["status", "log", "eviction"],
        ),
        _core("secrets", "Secret"),
        _core("configmaps", "ConfigMap", short_names=["cm"]),
        _core("events", "Event", short_names=["ev"]),
        _core("services", "Service", short_names=["svc"], categories=["all"], subresources=status),
        _core("serviceaccounts", "ServiceAccount", short_names=["sa"]),
        _core("persistentvolumeclaims", "PersistentVolumeClaim", short_names=["pvc"]),
        ResourceInfo("events.k8s.io", ["v1"], "events", "Event", short_names=["ev"]),
        ResourceInfo("batch", ["v1"], "jobs", "Job", categories=["all"], subresources=["status"]),
        ResourceInfo("batch", ["v1"], "cronjobs", "CronJob", short_names=["cj"]),
        ResourceInfo(
            "apps",
            ["v1"],
            "deployments",
            "Deployment",
            short_names=["deploy"],
            categories=["all"],
            subresources=["status", "scale"],
        ),
        ResourceInfo("coordination.k8s.io", ["v1"], "leases", "Lease"),
        ResourceInfo(
            "apiextensions.k8s.io",
            ["v1"],
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short_names=["crd", "crds"],
            subresources=["status"],
        ),
        *[
            ResourceInfo("rbac.authorization.k8s.io", ["v1"], plural, kind, namespaced=ns)
            for plural, kind, ns in [
                ("roles", "Role", True),
                ("rolebindings", "RoleBinding", True),
                ("clusterroles", "ClusterRole", False),
                ("clusterrolebindings", "ClusterRoleBinding", False),
            ]
        ],
        ResourceInfo("policy", ["v1"], "poddisruptionbudgets", "PodDisruptionBudget"),
        ResourceInfo("scheduling.k8s.io", ["v1"], "priorityclasses", "PriorityClass", False),
    ]


def from_crd(crd: dict) -> ResourceInfo:
    """The resource a CustomResourceDefinition defines (its served versions)."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec.get("versions", []) if v.get("served", True)]
    served.sort(key=lambda v: not v.get("storage", False))
    if not served:
        raise ValueError(f"CRD {crd['metadata']['name']!r} serves no version; set served: true")
    first = served[0]
    subresources = []
    if "status" in (first.get("subresources") or {}):
        subresources.append("status")
    if "scale" in (first.get("subresources") or {}):
        subresources.append("scale")
    columns = [
        Column(
            name=c["name"],
            json_path=c["jsonPath"],
            type=c.get("type", "string"),
            priority=c.get("priority", 0),
            description=c.get("description", ""),
            format=c.get("format", ""),
        )
        for c in first.get("additionalPrinterColumns") or []
    ]
    return ResourceInfo(
        group=spec["group"],
        versions=[v["name"] for v in served],
        plural=names["plural"],
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        singular=names.get("singular", ""),
        short_names=list(names.get("shortNames") or []),
        categories=list(names.get("categories") or []),
        subresources=subresources,
        columns=columns or [Column("Age", ".metadata.creationTimestamp", "date")],
        crd_name=crd["metadata"]["name"],
    )


class Registry:
    """Resources by (group, plural), with lookups by version and plural for routing."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], ResourceInfo] = {}
        for info in builtin_resources():
            self.add(info)

    def add(self, info: ResourceInfo) -> None:
        self._by_key[info.key] = info

    def remove(self, key: tuple[str, str]) -> None:
        self._by_key.pop(key, None)

    def __iter__(self) -> Iterator[ResourceInfo]:
        return iter(list(self._by_key.values()))

    def get(self, group: str, plural: str) -> ResourceInfo | None:
        return self._by_key.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        info = self._by_key.get((group, plural))
        return info if info is not None and version in info.versions else None

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        group, _, version = api_version.rpartition("/")
        for info in self:
            if info.group == group and info.kind == kind and version in info.versions:
                return info
        return None

    # Discovery documents (the legacy, unaggregated form: kubectl and helm fall back to it).
    def api_versions(self) -> dict:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }

    def api_group_list(self) -> dict:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()}

    def api_group(self, group: str) -> dict | None:
        found = [g for g in self._groups() if g["name"] == group]
        return {"kind": "APIGroup", "apiVersion": "v1", **found[0]} if found else None

    def _groups(self) -> list[dict]:
        versions: dict[str, list[str]] = {}
        for info in self:
            if info.group:
                known = versions.setdefault(info.group, [])
                known.extend(v for v in info.versions if v not in known)
        return [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{group}/{vs[0]}", "version": vs[0]},
            }
            for group, vs in sorted(versions.items())
        ]

    def api_resource_list(self, group: str, version: str) -> dict | None:
        infos = [i for i in self if i.group == group and version in i.versions]
        if not infos:
            return None
        resources = []
        for info in infos:
            resources.append(
                {
                    "name": info.plural,
                    "singularName": info.singular or info.kind.lower(),
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": VERBS,
                    "shortNames": info.short_names,
                    "categories": info.categories,
                }
            )
            for sub in info.subresources:
                resources.append(
                    {
                        "name": f"{info.plural}/{sub}",
                        "singularName": "",
                        "namespaced": info.namespaced,
                        "kind": "Pod" if sub == "log" else info.kind,
                        "verbs": ["get"] if sub == "log" else ["get", "patch", "update"],
                    }
                )
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}
