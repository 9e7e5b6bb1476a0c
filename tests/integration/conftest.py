"""Fixtures shared by the trainer's integration tests. A module that trains asks for its own
feature cache with `pytest.mark.usefixtures("private_cache")` in its pytestmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cats_dogs_subset


@pytest.fixture(scope="module")
def cats_dogs(tmp_path_factory) -> Path:
    """A dozen training and six validation images per class of the shared cats-dogs set,
    copied once per module."""
    return cats_dogs_subset(tmp_path_factory.mktemp("cats-dogs"), train=12, validation=6)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """The test's own feature cache ($ICT_CACHE_DIR), so no test sees another's features."""
    monkeypatch.setenv("ICT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
