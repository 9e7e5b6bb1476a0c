"""A run's scratch folders (checkpoint downloads, artifact and feature staging), kept under the
cache folder rather than /tmp.

SIGTERM and SIGKILL end the trainer without any cleanup (os._exit; see cli.exit_on_sigterm), and
what is left can be large (full weights with optimizer state). A pod's emptyDir vanishes with the
pod, a laptop's /tmp does not: each folder is named after the process that made it, and every run
first clears the folders of processes that are gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ict_trainer.console import cache_root

log = logging.getLogger(__name__)


def scratch_root() -> Path:
    return cache_root() / "scratch"


def _owner_alive(folder: Path) -> bool:
    """Whether the process named in '<kind>-<pid>-<random>' still runs."""
    try:
        pid = int(folder.name.split("-")[1])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clear_stale() -> list[Path]:
    """Removes the scratch folders of runs that were killed; returns them."""
    root = scratch_root()
    stale = [f for f in root.iterdir() if not _owner_alive(f)] if root.is_dir() else []
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        log.info("removed %d scratch folder(s) of killed runs from %s", len(stale), root)
    return stale


def make_scratch(kind: str) -> Path:
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=root))


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    path = make_scratch(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
