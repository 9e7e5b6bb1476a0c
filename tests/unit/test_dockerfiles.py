"""Both images, checked without a Docker engine: the Dockerfiles parsed, the dependency sets
resolved from pyproject.toml, and the operator's entry point run without trainer libraries."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ict_operator.builders import SCRATCH

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
TRAINER_LIBRARIES = {"tensorflow", "keras", "numpy", "PIL", "matplotlib", "boto3", "tf_keras"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages with their (INSTRUCTION, arguments); continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base, name or None))
        else:
            stages[-1].instructions.append((keyword, args))
    return stages


def is_pinned(image: str) -> bool:
    """A digest, or a tag naming a patch release (not latest, slim or a bare minor version)."""
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    return bool(re.match(r"^\d+\.\d+\.\d+", tag))  # 3.11 or slim still move


def env_of(stage: Stage) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(stage.all("ENV"))))


@pytest.mark.parametrize("name", ["Dockerfile.trainer", "Dockerfile.operator"])
def test_image_is_multi_stage_pinned_non_root_with_ict_entrypoint(name):
    stages = parse_dockerfile(ROOT / name)
    assert len(stages) >= 2, f"{name}: build and runtime stages"
    for stage in stages:
        assert is_pinned(stage.base), f"{name}: base {stage.base!r} is not pinned"
    build, final = stages[0], stages[-1]
    assert f"--from={build.name} /opt/ict /opt/ict" in final.all("COPY"), name
    assert not [run for run in final.all("RUN") if "pip" in run], f"{name}: pip in the runtime"
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), f"{name}: USER {user}"
    assert final.all("ENTRYPOINT") == ['["ict"]'], name
    assert env_of(final)["PATH"].startswith("/opt/ict/bin:"), name
    # What the build copies exists and is not left out of the build context.
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for copy in build.all("COPY"):
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists() and source not in ignored, f"{name}: COPY {source}"


def test_trainer_image_installs_gpu_tensorflow_and_writes_only_to_scratch():
    build, final = parse_dockerfile(ROOT / "Dockerfile.trainer")
    installs = [run for run in build.all("RUN") if "pip install" in run and ".[" in run]
    assert len(installs) == 1
    # The trap: the `trainer` extra brings tensorflow-cpu on x86_64, which never sees a GPU.
    assert '".[trainer-gpu]"' in installs[0] and '".[trainer]"' not in installs[0]
    assert '"tensorflow[and-cuda]==${TENSORFLOW_VERSION}"' in installs[0]
    (arg,) = [a for a in build.all("ARG") if a.startswith("TENSORFLOW_VERSION=")]
    pinned = Version(arg.partition("=")[2])
    (gpu_tensorflow,) = [
        r for r in map(Requirement, PYPROJECT["project"]["optional-dependencies"]["trainer-gpu"])
        if r.name == "tensorflow"
    ]  # fmt: skip
    assert gpu_tensorflow.extras == {"and-cuda"}
    assert pinned in gpu_tensorflow.specifier, f"{pinned} outside pyproject's {gpu_tensorflow}"
    # The Job mounts its only writable volume at SCRATCH: every cache and config goes there.
    env = env_of(final)
    for variable in ("HOME", "TMPDIR", "ICT_CACHE_DIR", "MPLCONFIGDIR"):
        assert env[variable].startswith(SCRATCH), variable
    assert final.all("WORKDIR") == [SCRATCH]


def test_operator_image_installs_the_operator_extra_and_no_tensorflow():
    stages = parse_dockerfile(ROOT / "Dockerfile.operator")
    installs = [run for run in stages[0].all("RUN") if "pip install" in run and ".[" in run]
    assert installs == ['/opt/ict/bin/pip install ".[operator]"']
    for stage in stages:
        assert "tensorflow" not in " ".join(args for _, args in stage.instructions).lower()
    assert stages[-1].all("CMD") == ['["operator"]']


def test_dockerignore_keeps_venvs_caches_outputs_and_shared_data_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert ignored >= {
        ".git",
        ".venv",
        "**/__pycache__",
        ".pytest_cache",
        ".work",
        "ict-output",
        "shared",
        "**/*.h5",
    }


def resolve(extras: set[str]) -> set[str]:
    """Distribution names the project with these extras installs, dependencies included.

    The project's own extras come from pyproject.toml (self-references followed); the rest
    from the metadata of the installed distributions (the dev environment has both extras),
    markers evaluated for this machine.
    """
    environment = default_environment()
    found: set[str] = set()
    pending = [Requirement(f"{PROJECT}[{','.join(sorted(extras))}]")]
    seen: set[tuple[str, frozenset]] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if name == PROJECT:
            optional = PYPROJECT["project"]["optional-dependencies"]
            lines = PYPROJECT["project"]["dependencies"] + [
                line for extra in requirement.extras for line in optional[extra]
            ]
        else:
            found.add(name)
            lines = importlib.metadata.requires(name) or []
        for line in lines:
            dependency = Requirement(line)
            active = dependency.marker is None or any(
                dependency.marker.evaluate({**environment, "extra": extra})
                for extra in (requirement.extras or {""})
            )
            if active:
                pending.append(dependency)
    return found


def test_operator_dependencies_hold_no_tensorflow():
    dependencies = resolve({"operator"})
    assert {"kopf", "kubernetes", "pydantic", "pyyaml"} <= dependencies
    assert not {d for d in dependencies if "tensorflow" in d or "keras" in d}
    assert not dependencies & {"numpy", "pillow", "matplotlib", "boto3"}


def test_trainer_gpu_extra_brings_cuda_tensorflow_not_tensorflow_cpu():
    gpu = PYPROJECT["project"]["optional-dependencies"]["trainer-gpu"]
    names = {canonicalize_name(Requirement(line).name) for line in gpu}
    assert "tensorflow" in names and "tensorflow-cpu" not in names
    libraries = {
        canonicalize_name(Requirement(line).name)
        for line in PYPROJECT["project"]["optional-dependencies"]["trainer-libs"]
    }
    assert f"{PROJECT}[trainer-libs]" in gpu
    assert libraries >= {"numpy", "pillow", "boto3", "matplotlib"}
    assert "kopf" not in resolve({"trainer"})


def test_operator_entry_point_runs_without_trainer_libraries():
    """`ict operator` as the operator image runs it: importing a trainer library fails there."""
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class NotInTheImage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {sorted(TRAINER_LIBRARIES)!r}:
                    raise ImportError(f"the operator image has no {{name}}")
        sys.meta_path.insert(0, NotInTheImage())
        from ict_trainer.cli import build_parser
        args = build_parser().parse_args(["operator", "--trainer-image", "t:1", "-A"])
        import ict_operator.handlers, ict_operator.main
        from ict_operator.settings import settings_from
        print(settings_from(args).trainer_image)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "t:1"
