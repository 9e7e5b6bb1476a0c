"""Kills at chosen points (ICT_KILL_AT, see ict_trainer.faults), then re-runs: what a resumed or
re-published run must be. Tiny scratch runs: 24 training images at 32 px, batches of 8.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from ict_api.spec import Strategy
from ict_trainer import faults
from ict_trainer.strategies import STRATEGIES
from tests.helpers import ARTIFACTS, CATS_DOGS, cats_dogs_subset, events, train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_cache")]


class Killed(BaseException):
    """What a kill point raises in this process instead of signalling it."""


@pytest.fixture
def kill_at(monkeypatch, capsys):
    def raise_killed(signum):
        raise Killed(os.environ[faults.KILL_AT_ENV])

    monkeypatch.setattr(faults, "die", raise_killed)

    def arm(point: str | None) -> None:
        """Kill at point, or no more (and forget what the killed run printed)."""
        if point:
            monkeypatch.setenv(faults.KILL_AT_ENV, point)
        else:
            monkeypatch.delenv(faults.KILL_AT_ENV, raising=False)
            capsys.readouterr()

    return arm


@pytest.fixture
def data(tmp_path):
    return cats_dogs_subset(tmp_path / "data", train=12, validation=4)


def scratch_args(
    data: Path, output: Path, epochs: int = 4, size: int = 48, images: str = "memory"
) -> list[str]:
    spec = output.parent / f"{output.name}.yaml"
    spec.write_text(f"training: {{batchSize: 8}}\ncache: {{images: {images}}}\n")
    return [
        *("-f", str(spec), "--data", str(data), "--strategy", "scratch"),
        *("--epochs", str(epochs), "--image-size", str(size), "--output", str(output)),
    ]


def losses(output: Path) -> list[float]:
    return json.loads((output / "metrics.json").read_text())["history"]["loss"]


def test_one_seed_gives_one_run_and_a_resumed_run_is_the_run_it_replaces(
    data, tmp_path, capsys, kill_at
):
    for name in ("a", "b"):
        assert train(capsys, *scratch_args(data, tmp_path / name))[0] == 0
    assert losses(tmp_path / "a") == pytest.approx(losses(tmp_path / "b"), rel=1e-5)

    kill_at("epoch-end:train:2")
    with pytest.raises(Killed):
        train(capsys, *scratch_args(data, tmp_path / "c"))
    kill_at(None)
    code, lines, _ = train(capsys, *scratch_args(data, tmp_path / "c"))
    assert code == 0
    assert events(lines, "resume")[0]["epoch"] == 2
    assert [e["epoch"] for e in events(lines, "epoch")] == [3, 4]
    # epochs 3 and 4 saw the same order, augmentation and dropout as the uninterrupted run's
    assert losses(tmp_path / "c") == pytest.approx(losses(tmp_path / "a"), rel=1e-4)


def test_the_disk_image_cache_trains_and_resumes_as_the_memory_one(
    data, tmp_path, capsys, kill_at, private_cache
):
    assert train(capsys, *scratch_args(data, tmp_path / "memory", epochs=2))[0] == 0
    kill_at("epoch-end:train:1")
    with pytest.raises(Killed):
        train(capsys, *scratch_args(data, tmp_path / "disk", epochs=2, images="disk"))
    cached = sorted((private_cache / "images" / "48px").iterdir())
    assert len(cached) == 32  # every training and validation image (24 + 8), once
    assert {f.stat().st_size for f in cached} == {48 * 48 * 3}
    kill_at(None)
    code, lines, _ = train(capsys, *scratch_args(data, tmp_path / "disk", epochs=2, images="disk"))
    assert code == 0
    assert events(lines, "resume")[0]["epoch"] == 1
    assert sorted((private_cache / "images" / "48px").iterdir()) == cached  # nothing decoded again
    # the same pixels in the same order: the same run as the memory cache's
    assert losses(tmp_path / "disk") == pytest.approx(losses(tmp_path / "memory"), rel=1e-4)


def test_resume_after_the_dataset_changed_is_refused(data, tmp_path, capsys, kill_at):
    output = tmp_path / "out"
    kill_at("epoch-end:train:1")
    with pytest.raises(Killed):
        train(capsys, *scratch_args(data, output, epochs=2))
    kill_at(None)
    for path in sorted((data / "train" / "cats").iterdir())[:4]:
        shutil.move(path, data / "train" / "dogs" / path.name)
    code, lines, err = train(capsys, *scratch_args(data, output, epochs=2))
    assert code == 2
    assert "dataset changed" in err and "--overwrite" in err
    assert not events(lines, "epoch")

    code, lines, _ = train(capsys, *scratch_args(data, output, epochs=2), "--overwrite")
    assert code == 0
    assert not events(lines, "resume")
    assert [e["epoch"] for e in events(lines, "epoch")] == [1, 2]


SAME = ("final", "best", "saved", "keptHead", "accuracy", "cacheHit", "artifacts")


def test_a_rerun_over_its_finished_output_trains_nothing_until_an_input_changes(
    data, tmp_path, capsys, caplog, monkeypatch
):
    output = tmp_path / "out"
    args = scratch_args(data, output, epochs=1)
    code, lines, _ = train(capsys, *args)
    assert code == 0
    (trained,) = events(lines, "summary")
    assert trained["upToDate"] is False
    recorded = json.loads((output / "metrics.json").read_text())["inputs"]
    assert set(recorded) == {"dataset", "weights"}
    stamps = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}

    def no_training(ctx):
        raise AssertionError("an up-to-date output must not be trained")

    with monkeypatch.context() as patch:
        patch.setitem(STRATEGIES, Strategy.SCRATCH, no_training)
        code, lines, _ = train(capsys, *args)
    assert code == 0
    assert [e["event"] for e in lines] == ["start", "dataset", "upToDate", "summary"]
    message = events(lines, "upToDate")[0]["message"]
    assert f"output {str(output)!r} is up to date" in message and "--overwrite" in message
    (summary,) = events(lines, "summary")
    assert summary["upToDate"] is True
    assert {k: summary[k] for k in SAME} == {k: trained[k] for k in SAME}
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == stamps

    # One more image: the fingerprint changes, the run trains again and says why.
    extra = sorted((CATS_DOGS / "train" / "cats").iterdir())[-1]
    shutil.copy(extra, data / "train" / "cats" / extra.name)
    caplog.set_level(logging.INFO, logger="ict_trainer")
    code, lines, _ = train(capsys, *args)
    assert code == 0
    assert [e["epoch"] for e in events(lines, "epoch")] == [1]
    assert events(lines, "summary")[0]["upToDate"] is False
    assert "the dataset changed since it was trained" in caplog.text
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["counts"]["train"]["cats"] == 13
    assert metrics["inputs"]["dataset"] != recorded["dataset"]
    assert metrics["inputs"]["weights"] == recorded["weights"]

    # --overwrite always trains.
    code, lines, _ = train(capsys, *args, "--overwrite")
    assert code == 0
    assert [e["epoch"] for e in events(lines, "epoch")] == [1]
    assert not events(lines, "upToDate")


@pytest.mark.parametrize(
    "point", ["publish:old-metrics-removed", "publish:before-metrics", "publish:before-clear"]
)
def test_a_kill_while_publishing_never_leaves_two_runs_mixed(
    data, tmp_path, capsys, kill_at, point
):
    output = tmp_path / "out"
    assert train(capsys, *scratch_args(data, output, epochs=1, size=48))[0] == 0
    kill_at(point)
    with pytest.raises(Killed):
        train(capsys, *scratch_args(data, output, epochs=1, size=56), "--overwrite")
    kill_at(None)
    model_size = keras.saving.load_model(output / "model.keras").input_shape[1]
    if (output / "metrics.json").exists():  # then it describes the model next to it
        assert json.loads((output / "metrics.json").read_text())["imageSize"] == model_size

    # The same spec over its own half-published output, --overwrite or not: resumes, publishes;
    # once metrics.json is out, the output is up to date and only the checkpoints are cleared.
    code, lines, _ = train(capsys, *scratch_args(data, output, epochs=1, size=56))
    assert code == 0, capsys.readouterr()
    if point == "publish:before-clear":
        assert events(lines, "upToDate") and not events(lines, "resume")
    else:
        assert events(lines, "resume")[0]["complete"] is True
    assert not events(lines, "epoch")
    assert {p.name for p in output.iterdir()} == ARTIFACTS
    assert json.loads((output / "metrics.json").read_text())["imageSize"] == 56
    assert keras.saving.load_model(output / "model.keras").input_shape[1] == 56


def test_sigterm_leaves_no_scratch_behind(data, tmp_path, private_cache):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "ICT_CACHE_DIR": str(private_cache),
        faults.KILL_AT_ENV: "epoch-end:train:1:TERM",
    }
    command = [
        sys.executable,
        "-m",
        "ict_trainer.cli",
        "train",
        *scratch_args(data, tmp_path / "o"),
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 128 + signal.SIGTERM, first.stderr
    assert [p.name for p in temp.iterdir() if p.name.startswith("ict-")] == []
    left = list((private_cache / "scratch").iterdir())
    assert left  # the killed run's, cleared by the next run

    del env[faults.KILL_AT_ENV]
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert list((private_cache / "scratch").iterdir()) == []
    assert [p.name for p in temp.iterdir() if p.name.startswith("ict-")] == []
