"""Which epoch's weights a run publishes, and how metrics.json says so.

Every stage (scratch's `train`, `head`, `finetune`) ends with the weights of one of its epochs:
its best by the monitored validation metric when early stopping restores the best weights,
else its last. A fine-tune stage that ends less accurate than the head it started from (or as
accurate and worse on the monitor) is undone.
`final` is the last epoch run, `best` the run's best epoch by the monitored metric, `saved`
the epoch whose weights are in model.keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from ict_api.spec import EarlyStoppingSpec, Monitor

# For each monitored metric: is a lower value better?
LOWER_IS_BETTER = {Monitor.VAL_LOSS: True, Monitor.VAL_ACCURACY: False}


@dataclass(frozen=True)
class Saved:
    """The epoch whose weights a stage (or the run) ends with; epochs count from 1."""

    stage: str
    stage_epoch: int
    run_epoch: int
    why: str


def better(a: float, b: float, monitor: Monitor) -> bool:
    """Whether a is strictly better than b on the monitored metric; NaN (a diverged stage)
    is worse than any number."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(b) and not math.isnan(a)
    return a < b if LOWER_IS_BETTER[monitor] else a > b


def fine_tune_wins(
    history: dict[str, list[float]], head_epoch: int, tuned_epoch: int, monitor: Monitor
) -> tuple[bool, str]:
    """(whether the fine-tuned model replaces the head it started from, the metric that
    decided), from their saved run epochs (counted from 1). More validation images right wins;
    as many, a monitored value no worse. Accuracy decides first because it is what users
    compare: with smoothed targets a lower loss can come with fewer images right
    (bench/RESULTS.md). Without accuracy in the history, the monitor alone decides."""
    accuracy = history.get(Monitor.VAL_ACCURACY.value)
    if accuracy:
        head, tuned = accuracy[head_epoch - 1], accuracy[tuned_epoch - 1]
        if better(tuned, head, Monitor.VAL_ACCURACY) or better(head, tuned, Monitor.VAL_ACCURACY):
            return better(tuned, head, Monitor.VAL_ACCURACY), Monitor.VAL_ACCURACY.value
    values = history[monitor.value]
    return not better(values[head_epoch - 1], values[tuned_epoch - 1], monitor), monitor.value


def best_index(values: list[float], monitor: Monitor) -> int:
    """The first epoch (0-based) with the best value, as Keras' EarlyStopping picks it."""
    array = np.asarray(values, dtype=float)
    if np.isnan(array).all():
        return 0
    return int(np.nanargmin(array) if LOWER_IS_BETTER[monitor] else np.nanargmax(array))


def stopping_callback(stopping: EarlyStoppingSpec) -> keras.callbacks.EarlyStopping | None:
    """Keras' EarlyStopping (which restores the best weights at the end of a stage whether it
    stopped early or not), or None when early stopping is off."""
    if not stopping.enabled:
        return None
    return keras.callbacks.EarlyStopping(
        monitor=stopping.monitor.value,
        patience=stopping.patience,
        restore_best_weights=stopping.restore_best_weights,
    )


def stage_choice(
    stage: str,
    first_run_epoch: int,
    history: dict[str, list[float]],
    stopping: EarlyStoppingSpec,
    callback: keras.callbacks.EarlyStopping | None = None,
) -> Saved:
    """The epoch a stage's weights come from. `callback` is the stage's EarlyStopping when the
    stage ran in this process (it knows what it restored: after a resume it saw only the
    epochs run since); without it the rule is applied to the stage's history."""
    epochs = len(history.get("loss", []))
    if callback is not None and callback.restore_best_weights and callback.best_weights:
        index, why = callback.best_epoch, f"best {stopping.monitor.value} of the stage, restored"
    elif stopping.enabled and stopping.restore_best_weights and history.get(stopping.monitor.value):
        index = best_index(history[stopping.monitor.value], stopping.monitor)
        why = f"best {stopping.monitor.value} of the stage, restored"
    else:
        index, why = epochs - 1, "last epoch of the stage"
    return Saved(stage, index + 1, first_run_epoch + index, why)


def epoch_record(history: dict[str, list[float]], stages: list[tuple[str, int]], run_epoch: int):
    """{epoch, stage, stageEpoch, metric: value...} of one run epoch (counted from 1)."""
    stage, first = next((s, f) for s, f in reversed(stages) if f <= run_epoch)
    # JSON has no NaN: a diverged epoch's metrics are null.
    metrics = {
        key: values[run_epoch - 1] if math.isfinite(values[run_epoch - 1]) else None
        for key, values in history.items()
    }
    return {"epoch": run_epoch, "stage": stage, "stageEpoch": run_epoch - first + 1, **metrics}


def selection_metrics(
    history: dict[str, list[float]],
    stages: list[tuple[str, int]],
    stopping: EarlyStoppingSpec,
    saved: Saved,
    kept_head: bool | None,
) -> dict:
    """metrics.json's final, best, saved and selection entries."""
    epochs = len(history.get("loss", []))
    if not epochs:
        return {"final": {}, "best": {}, "saved": {}, "selection": {}}
    monitor = stopping.monitor
    best = None
    if history.get(monitor.value):
        best = best_index(history[monitor.value], monitor) + 1
    return {
        "final": epoch_record(history, stages, epochs),
        "best": {**epoch_record(history, stages, best), "monitor": monitor.value} if best else {},
        "saved": {**epoch_record(history, stages, saved.run_epoch), "why": saved.why},
        "selection": {
            "monitor": monitor.value,
            "split": "validation",
            "earlyStopping": stopping.enabled,
            "restoreBestWeights": stopping.enabled and stopping.restore_best_weights,
            "keptHead": kept_head,
            # Early stopping and the keep-the-head rule look at validation scores: those of
            # the saved model are then somewhat optimistic.
            "usesValidation": stopping.enabled or kept_head is not None,
        },
    }
