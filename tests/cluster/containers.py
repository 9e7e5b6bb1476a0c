"""How a container spec becomes a local process (pure: lookups are passed in).

- env: `value`, `valueFrom.secretKeyRef` / `configMapKeyRef` (optional honoured), `fieldRef` for
  metadata.name/namespace/uid, status.podIP and spec.nodeName; `envFrom` secretRef/configMapRef.
  A missing Secret, ConfigMap or key is a ConfigError carrying the kubelet's message.
- `$(VAR)` references in command, args and env values expand as the kubelet expands them.
- volume mounts map to folders under the pod's directory; every occurrence of a mount path (and
  of the terminationMessagePath) in env values, command and args is rewritten to the local one.
  Secret and ConfigMap volumes are materialised as files. Nothing else is isolated: the root
  filesystem is the test machine's, so `readOnlyRootFilesystem`, users and capabilities are
  not enforced.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Lookup of a Secret or ConfigMap by (kind, namespace, name); None when it does not exist.
Lookup = Callable[[str, str, str], dict | None]
# What a pod process inherits from the test process (never the developer's credentials).
# PATH starts with the test interpreter's folder, so `ict` and `python` are the venv's
# (after NodeSettings.path_prefix, where a test can put stand-ins).
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")


class ConfigError(Exception):
    """CreateContainerConfigError: the container cannot be configured yet."""


@dataclass
class Plan:
    """A container, ready to start as a local process."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_file: Path


def _data(obj: dict, kind: str) -> dict[str, str]:
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


def _ref_value(ref: dict, kind: str, namespace: str, lookup: Lookup) -> str | None:
    obj = lookup(kind, namespace, ref["name"])
    label = "secret" if kind == "Secret" else "configmap"
    if obj is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{label} "{ref["name"]}" not found')
    data = _data(obj, kind)
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
    return data[ref["key"]]


def _field(pod: dict, path: str) -> str:
    value: object = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion; `$$(VAR)` escapes to a literal `$(VAR)`."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


def resolve_env(pod: dict, container: dict, lookup: Lookup) -> dict[str, str]:
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if key in source:
                ref = source[key]
                obj = lookup(kind, namespace, ref["name"])
                if obj is None and not ref.get("optional"):
                    label = "secret" if kind == "Secret" else "configmap"
                    raise ConfigError(f'{label} "{ref["name"]}" not found')
                prefix = source.get("prefix", "")
                env.update({prefix + k: v for k, v in _data(obj or {}, kind).items()})
    for var in container.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = _expand(var.get("value", ""), env)
            continue
        value: str | None
        if "secretKeyRef" in source:
            value = _ref_value(source["secretKeyRef"], "Secret", namespace, lookup)
        elif "configMapKeyRef" in source:
            value = _ref_value(source["configMapKeyRef"], "ConfigMap", namespace, lookup)
        elif "fieldRef" in source:
            value = _field(pod, source["fieldRef"]["fieldPath"])
        else:
            raise ConfigError(f"unsupported valueFrom {source!r} for env {var['name']!r}")
        if value is not None:
            env[var["name"]] = value
    return env


def _materialise(volume: dict, folder: Path, namespace: str, lookup: Lookup) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
        if key in volume:
            name = volume[key].get("secretName") or volume[key].get("name")
            obj = lookup(kind, namespace, name)
            if obj is None and not volume[key].get("optional"):
                label = "secret" if kind == "Secret" else "configmap"
                raise ConfigError(f'{label} "{name}" not found')
            for file, content in _data(obj or {}, kind).items():
                (folder / file).write_text(content)


def plan(
    pod: dict, container: dict, pod_dir: Path, lookup: Lookup, path_prefix: Sequence[str] = ()
) -> Plan:
    """The local process for a container; raises ConfigError (kubelet message) when it cannot.

    `path_prefix`: folders searched for the command before the venv's bin (NodeSettings).
    """
    namespace = pod["metadata"]["namespace"]
    env = resolve_env(pod, container, lookup)
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    paths: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ConfigError(f'volume "{mount["name"]}" not found in the pod spec')
        local = pod_dir / "volumes" / mount["name"]
        _materialise(volume, local, namespace, lookup)
        paths[mount["mountPath"]] = str(local / mount.get("subPath", ""))
    termination = pod_dir / f"termination-{container['name']}"
    termination.touch()
    paths[container.get("terminationMessagePath", "/dev/termination-log")] = str(termination)

    def local(text: str) -> str:
        for mount_path in sorted(paths, key=len, reverse=True):
            text = text.replace(mount_path, paths[mount_path])
        return text

    env = {k: local(v) for k, v in env.items()}
    argv = [
        local(_expand(a, env)) for a in container.get("command", []) + container.get("args", [])
    ]
    if not argv:
        raise ConfigError(
            f"container {container['name']!r} has no command: the emulated kubelet runs the "
            "command on the test machine and cannot run an image's entrypoint; set `command`"
        )
    search_path = os.pathsep.join(
        [*path_prefix, str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
    executable = shutil.which(argv[0], path=search_path)
    if executable is None:
        raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH: unknown')
    home = pod_dir / "home"
    home.mkdir(exist_ok=True)
    inherited = {k: os.environ[k] for k in INHERITED if k in os.environ}
    inherited["PATH"] = search_path
    workdir = Path(local(container["workingDir"])) if container.get("workingDir") else home
    workdir.mkdir(parents=True, exist_ok=True)
    return Plan(
        [executable, *argv[1:]],
        {**inherited, "HOME": str(home), "HOSTNAME": pod["metadata"]["name"], **env},
        workdir,
        termination,
    )
