"""Progress lines, the termination message, the precision table, checkpoint state."""

import io
import json

import pytest

from ict_trainer import termination
from ict_trainer.checkpoints import STATE, Checkpoints
from ict_trainer.errors import OutputError
from ict_trainer.progress import Reporter, clean_metrics
from ict_trainer.stores import open_store

INPUTS = {"dataset": "fingerprint-1", "weights": "none@keras"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ICT_CACHE_DIR", str(tmp_path / "cache"))


def test_json_lines_when_not_a_terminal():
    stream = io.StringIO()
    reporter = Reporter(stream)
    assert reporter.json_lines and reporter.keras_verbose == 0
    reporter.emit("epoch", stage="head", epoch=1, epochs=3, metrics={"loss": 0.5})
    assert json.loads(stream.getvalue()) == {
        "event": "epoch",
        "stage": "head",
        "epoch": 1,
        "epochs": 3,
        "metrics": {"loss": 0.5},
    }


def test_people_read_a_publish_as_a_sentence(caplog):
    reporter = Reporter(io.StringIO(), json_lines=False)
    with caplog.at_level("INFO", logger="ict"):
        reporter.emit("publish", uri="s3://b/run", uploaded=1, skipped=5, bytes=9, seconds=0.1)
        reporter.emit("publish", uri="out", uploaded=6, skipped=0, bytes=9, seconds=0.1)
    assert caplog.messages == [
        "wrote 1 file to s3://b/run (5 already there, unchanged)",
        "wrote 6 files to out",
    ]


def test_metrics_are_plain_finite_numbers():
    assert clean_metrics(
        {"loss": float("nan"), "accuracy": 0.123456789, "learning_rate": 1e-3}
    ) == {"accuracy": 0.123457}


def test_termination_message_stays_under_the_kubernetes_limit(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    monkeypatch.setenv(termination.TERMINATION_MESSAGE_ENV, str(path))
    summary = {
        "status": "succeeded",
        "accuracy": 0.9,
        "final": {f"metric_{i}": 0.5 for i in range(400)},
        "artifacts": {"model.keras": "s3://b/out/model.keras"},
    }
    termination.write_termination_message(summary)
    message = json.loads(path.read_text())
    assert len(path.read_bytes()) < 4096
    assert message["status"] == "succeeded" and message["accuracy"] == 0.9
    assert "final" not in message
    assert message["artifacts"]["model.keras"] == "s3://b/out/model.keras"


def test_no_termination_message_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(termination.TERMINATION_MESSAGE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    termination.write_termination_message({"status": "succeeded"})
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_commits_replace_the_previous_epoch(tmp_path):
    store = open_store(str(tmp_path / "out"))
    checkpoints = Checkpoints(store, "digest-a", INPUTS)
    assert checkpoints.load(overwrite=False) == {}
    weights = tmp_path / "w.h5"
    for epoch in (1, 2):
        weights.write_bytes(f"epoch {epoch}".encode())
        checkpoints.commit("head", epoch, weights, {"loss": [0.9, 0.8][:epoch]}, complete=False)
    keys = [o.key for o in store.list("checkpoints")]
    assert keys == ["checkpoints/head/epoch-0002.weights.h5", "checkpoints/state.json"]

    again = Checkpoints(store, "digest-a", INPUTS)
    stages = again.load(overwrite=False)
    assert stages["head"]["epoch"] == 2 and stages["head"]["history"] == {"loss": [0.9, 0.8]}
    assert again.fetch_weights("head").read_bytes() == b"epoch 2"


def test_checkpoints_of_another_spec_are_refused_unless_overwrite(tmp_path):
    store = open_store(str(tmp_path / "out"))
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"x")
    Checkpoints(store, "digest-a", INPUTS).commit("train", 1, weights, {}, complete=False)
    with pytest.raises(OutputError, match="holds checkpoints of a different spec"):
        Checkpoints(store, "digest-b", INPUTS).load(overwrite=False)
    assert store.exists(STATE)
    assert Checkpoints(store, "digest-b", INPUTS).load(overwrite=True) == {}
    assert not store.exists(STATE)


@pytest.mark.parametrize("changed", ["dataset", "weights"])
def test_checkpoints_trained_on_other_input_are_refused_unless_overwrite(tmp_path, changed):
    store = open_store(str(tmp_path / "out"))
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"x")
    Checkpoints(store, "digest-a", INPUTS).commit("train", 2, weights, {}, complete=False)
    now = {**INPUTS, changed: "something else"}
    with pytest.raises(OutputError, match=f"{changed} changed.*--overwrite"):
        Checkpoints(store, "digest-a", now).load(overwrite=False)
    assert store.exists(STATE)
    assert Checkpoints(store, "digest-a", now).load(overwrite=True) == {}
    assert not store.exists(STATE)
