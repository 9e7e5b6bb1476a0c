"""Progress for people (Keras' bar on a terminal) and for machines (one JSON line per event).

When stdout is not a terminal every event is one JSON object on one line of stdout:
  {"event": "start", "name": ..., "strategy": ...}
  {"event": "dataset", "classes": [...], "counts": {...}, "skipped": n}
  {"event": "features", "cacheHit": bool, "key": ...}
  {"event": "epoch", "stage": "head", "epoch": 3, "epochs": 50, "metrics": {"loss": ...}}
  {"event": "upToDate", "message": ...}   (the output already holds this training)
  {"event": "publish", "uri": ..., "uploaded": n, "skipped": n, "bytes": n, "seconds": s}
  {"event": "summary", "status": "succeeded", "upToDate": bool, "final": {...}, "best": {...},
   "artifacts": {...}}
  {"event": "error", "message": ...}
Logs go to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Any, TextIO

import keras

log = logging.getLogger("ict")


class Reporter:
    def __init__(self, stream: TextIO | None = None, json_lines: bool | None = None):
        self.stream = stream or sys.stdout
        self.json_lines = (not self.stream.isatty()) if json_lines is None else json_lines

    @property
    def keras_verbose(self) -> int:
        return 0 if self.json_lines else 1

    def emit(self, event: str, **fields: Any) -> None:
        if self.json_lines:
            record = {"event": event, **fields}
            self.stream.write(json.dumps(record, default=str, allow_nan=False) + "\n")
            self.stream.flush()
        elif event == "summary":
            log.info("%s", summary_line(fields))
        elif set(fields) == {"message"}:
            log.info("%s", fields["message"])
        elif event in HUMAN:
            log.info("%s", HUMAN[event](fields))
        elif event != "epoch":  # Keras' bar already shows epochs
            details = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "spec")
            log.info("%s: %s", event, details)


def _published(fields: dict[str, Any]) -> str:
    kept = f" ({fields['skipped']} already there, unchanged)" if fields["skipped"] else ""
    count = fields["uploaded"]
    return f"wrote {count} file{'' if count == 1 else 's'} to {fields['uri']}{kept}"


# Events whose fields read better as a sentence than as key=value pairs.
HUMAN = {"publish": _published}


def summary_line(summary: dict[str, Any]) -> str:
    """The summary for people: what was saved, and how it compares with the last and best."""
    saved, final, best = summary["saved"], summary["final"], summary.get("best") or {}
    accuracy = summary["accuracy"]
    # An up-to-date output's figures are those of the training found there.
    status = "up to date, nothing trained" if summary.get("upToDate") else summary["status"]
    text = (
        f"{status} in {summary['seconds']:.0f} s: validation accuracy "
        f"{accuracy:.3f} with the weights of epoch {saved['epoch']} ({saved['why']}); "
        f"last epoch {final['epoch']}"
    )
    if "val_accuracy" in final:
        text += f" had {final['val_accuracy']:.3f}"
    if best:
        text += f"; best by {best['monitor']}: epoch {best['epoch']}"
    return f"{text}. Model: {summary['artifacts']['model.keras']}"


def clean_metrics(logs: dict[str, Any] | None) -> dict[str, float]:
    """Plain floats, NaN/inf dropped (JSON has no NaN), learning rate left out."""
    metrics = {}
    for key, value in (logs or {}).items():
        number = float(value)
        if key != "learning_rate" and math.isfinite(number):
            metrics[key] = round(number, 6)
    return metrics


class EpochReporter(keras.callbacks.Callback):
    def __init__(self, reporter: Reporter, stage: str, epochs: int):
        super().__init__()
        self.reporter, self.stage, self.epochs = reporter, stage, epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.reporter.emit(
            "epoch",
            stage=self.stage,
            epoch=epoch + 1,
            epochs=self.epochs,
            metrics=clean_metrics(logs),
        )
