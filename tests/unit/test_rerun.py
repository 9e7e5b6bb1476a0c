"""When a re-run finds its own finished training in the output, and why it trains otherwise."""

import json
import logging

import pytest

from ict_trainer.rerun import finished_training, stale_reason
from ict_trainer.stores import open_store

INPUTS = {"dataset": "fingerprint-1", "weights": "sha256:abc"}
RECORDED = {"specDigest": "d1", "inputs": INPUTS, "final": {"epoch": 3}}
ARTIFACTS = ("model.keras", "metrics.json", "index.html")


@pytest.mark.parametrize(
    ("recorded", "inputs", "missing", "reason"),
    [
        (RECORDED, INPUTS, [], None),
        ({**RECORDED, "specDigest": "d0"}, INPUTS, [], "another spec's training (digest 'd0')"),
        ({"specDigest": "d1"}, INPUTS, [], "records no inputs (written by an earlier ict)"),
        (RECORDED, {**INPUTS, "dataset": "fingerprint-2"}, [], "the dataset changed since"),
        (RECORDED, {**INPUTS, "weights": "sha256:def"}, [], "the backbone weights changed"),
        (
            RECORDED,
            {"dataset": "fingerprint-2", "weights": "sha256:def"},
            [],
            "the dataset and backbone weights changed",
        ),
        (RECORDED, INPUTS, ["model.keras", "index.html"], "it lacks model.keras, index.html"),
    ],
    ids=["same", "other spec", "old metrics", "dataset", "weights", "both", "missing artifacts"],
)
def test_stale_reason(recorded, inputs, missing, reason):
    found = stale_reason(recorded, "d1", inputs, missing)
    if reason is None:
        assert found is None
    else:
        assert reason in found


def publish(root, metrics: dict) -> None:
    for name in ARTIFACTS:
        (root / name).write_text("x")
    (root / "metrics.json").write_text(json.dumps(metrics))


def test_a_finished_training_is_found_and_its_leftover_checkpoints_cleared(tmp_path):
    publish(tmp_path, RECORDED)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "state.json").write_text("{}")
    store = open_store(str(tmp_path))
    assert finished_training(store, "metrics.json", ARTIFACTS, "d1", INPUTS) == RECORDED
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ARTIFACTS)


def test_an_incomplete_or_other_output_is_trained_and_says_why(tmp_path, caplog):
    store = open_store(str(tmp_path))
    caplog.set_level(logging.INFO, logger="ict_trainer")
    assert finished_training(store, "metrics.json", ARTIFACTS, "d1", INPUTS) is None
    assert caplog.text == ""  # a first run: nothing to explain

    publish(tmp_path, RECORDED)
    (tmp_path / "index.html").unlink()
    assert finished_training(store, "metrics.json", ARTIFACTS, "d1", INPUTS) is None
    assert f"training output {str(tmp_path)!r} again: it lacks index.html" in caplog.text

    (tmp_path / "index.html").write_text("x")
    (tmp_path / "metrics.json").write_text("{not json")
    assert finished_training(store, "metrics.json", ARTIFACTS, "d1", INPUTS) is None
    assert "metrics.json is unreadable" in caplog.text
