"""The Helm chart as the real helm binary renders it: for the chart tests and the cluster tests.

`render(...)` returns the objects of `helm template`; `operator_env(objects)` the environment
of the operator's container, which is all an `ict operator` started outside the cluster needs
to run exactly as the chart would run it (plus the namespace of the release).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.binaries import helm

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "ict-operator"
CRD_NAME = "imageclassifiertrainings.littledata.dev"
CRD_FILE = ROOT / "crds" / f"{CRD_NAME}.yaml"
CHART_CRD_FILE = CHART / "files" / "crds" / f"{CRD_NAME}.yaml"


def run_helm(*args: str) -> subprocess.CompletedProcess:
    """helm ARGS; never raises, so that a test can assert on a refusal."""
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120, check=False)


def set_args(values: dict[str, str]) -> list[str]:
    """--set flags from {dotted.key: value} (helm's own syntax, e.g. '{a,b}' for a list)."""
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def render(
    values: dict[str, str] | None = None, namespace: str = "ict-system", release: str = "ict"
) -> list[dict[str, Any]]:
    """The objects `helm template` renders with these values, in order."""
    result = run_helm(
        "template", release, str(CHART), "--namespace", namespace, *set_args(values or {})
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def objects_of(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def operator_container(objects: list[dict]) -> dict[str, Any]:
    (deployment,) = objects_of(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def operator_env(objects: list[dict]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in operator_container(objects)["env"]}
