"""Model selection: which epoch each stage keeps, and final/best/saved in metrics.json."""

import math

import pytest

from ict_api.spec import EarlyStoppingSpec, Monitor
from ict_trainer.progress import summary_line
from ict_trainer.selection import (
    Saved,
    better,
    fine_tune_wins,
    selection_metrics,
    stage_choice,
)

HISTORY = {
    "loss": [0.7, 0.5, 0.4, 0.3],
    "val_loss": [0.6, 0.4, 0.5, 0.55],
    "val_accuracy": [0.6, 0.8, 0.85, 0.7],
}
ON = EarlyStoppingSpec()
OFF = EarlyStoppingSpec(enabled=False)


def test_a_stage_keeps_its_best_epoch_when_early_stopping_restores():
    assert stage_choice("train", 1, HISTORY, ON).stage_epoch == 2
    by_accuracy = EarlyStoppingSpec(monitor=Monitor.VAL_ACCURACY)
    assert stage_choice("train", 1, HISTORY, by_accuracy).stage_epoch == 3
    assert stage_choice("train", 1, HISTORY, OFF).stage_epoch == 4
    assert stage_choice("head", 1, HISTORY, EarlyStoppingSpec(restoreBestWeights=False)) == Saved(
        "head", 4, 4, "last epoch of the stage"
    )


def test_stage_epochs_are_placed_in_the_run():
    saved = stage_choice("finetune", 6, HISTORY, ON)
    assert (saved.stage, saved.stage_epoch, saved.run_epoch) == ("finetune", 2, 7)


def test_nan_is_worse_than_any_number():
    assert better(0.5, math.nan, Monitor.VAL_LOSS)
    assert not better(math.nan, 0.5, Monitor.VAL_LOSS)
    assert better(0.9, 0.8, Monitor.VAL_ACCURACY) and not better(0.9, 0.8, Monitor.VAL_LOSS)


# Head at run epoch 1, fine-tuned at run epoch 2: (val_accuracy, val_loss) of each.
@pytest.mark.parametrize(
    ("head", "tuned", "monitor", "expected"),
    [
        ((0.98, 0.25), (0.97, 0.24), Monitor.VAL_LOSS, (False, "val_accuracy")),  # lower loss
        ((0.97, 0.24), (0.98, 0.25), Monitor.VAL_LOSS, (True, "val_accuracy")),
        ((0.98, 0.25), (0.98, 0.24), Monitor.VAL_LOSS, (True, "val_loss")),  # a tie: the monitor
        ((0.98, 0.24), (0.98, 0.25), Monitor.VAL_LOSS, (False, "val_loss")),
        ((0.98, 0.24), (0.98, 0.24), Monitor.VAL_LOSS, (True, "val_loss")),  # no worse: kept
        ((0.98, 0.25), (math.nan, math.nan), Monitor.VAL_LOSS, (False, "val_accuracy")),
        ((0.97, 0.2), (0.98, 0.3), Monitor.VAL_ACCURACY, (True, "val_accuracy")),
    ],
)
def test_a_fine_tuned_model_must_classify_more_validation_images_right(
    head, tuned, monitor, expected
):
    history = {"val_accuracy": [head[0], tuned[0]], "val_loss": [head[1], tuned[1]]}
    assert fine_tune_wins(history, 1, 2, monitor) == expected


def test_without_accuracy_the_monitor_decides():
    history = {"val_loss": [0.3, 0.2]}
    assert fine_tune_wins(history, 1, 2, Monitor.VAL_LOSS) == (True, "val_loss")
    assert fine_tune_wins(history, 2, 1, Monitor.VAL_LOSS) == (False, "val_loss")


def test_final_best_and_saved_are_told_apart():
    stages = [("head", 1), ("finetune", 3)]
    saved = Saved("head", 2, 2, "head kept")
    metrics = selection_metrics(HISTORY, stages, ON, saved, kept_head=True)
    assert metrics["final"] == {
        "epoch": 4,
        "stage": "finetune",
        "stageEpoch": 2,
        "loss": 0.3,
        "val_loss": 0.55,
        "val_accuracy": 0.7,
    }
    assert metrics["best"]["epoch"] == 2 and metrics["best"]["monitor"] == "val_loss"
    assert metrics["best"]["val_accuracy"] == 0.8  # the chosen epoch's own metrics only
    assert "best_val_accuracy" not in metrics["best"]
    assert (metrics["saved"]["stage"], metrics["saved"]["epoch"]) == ("head", 2)
    assert metrics["saved"]["why"] == "head kept"
    assert metrics["selection"]["keptHead"] is True
    assert metrics["selection"]["split"] == "validation"
    assert metrics["selection"]["usesValidation"] is True


def test_diverged_epochs_are_null_in_metrics():
    history = {"loss": [0.7, math.nan], "val_loss": [0.6, math.nan]}
    metrics = selection_metrics(history, [("train", 1)], OFF, Saved("train", 2, 2, "last"), None)
    assert metrics["final"]["val_loss"] is None
    assert metrics["best"]["epoch"] == 1
    assert metrics["selection"]["usesValidation"] is False


def test_summary_line_names_the_saved_epoch_and_why():
    saved = stage_choice("train", 1, HISTORY, ON)
    metrics = selection_metrics(HISTORY, [("train", 1)], ON, saved, kept_head=None)
    line = summary_line(
        {
            "status": "succeeded",
            "seconds": 12.3,
            "accuracy": 0.8,
            "artifacts": {"model.keras": "out/model.keras"},
            **metrics,
        }
    )
    assert line.startswith("succeeded in 12 s: validation accuracy 0.800 with the weights of")
    assert "epoch 2 (best val_loss of the stage, restored)" in line
    assert "last epoch 4 had 0.700" in line and "out/model.keras" in line
