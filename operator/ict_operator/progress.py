"""The trainer's progress, read from its JSON lines (`ict train --json`, one event per line).

A pod's log also holds whatever else was printed (library warnings, a traceback, a half line
cut by a restart): every line that is not a known JSON event is ignored, never fatal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainerProgress:
    """What the trainer has told so far; fed line by line, read as a snapshot."""

    stage: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    latest: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    cache_hit: bool | None = None
    resumed_epoch: int | None = None  # completed epochs found in checkpoints, when resumed
    summary: dict[str, Any] | None = None
    error: str | None = None

    def feed(self, line: str | bytes) -> bool:
        """Takes one log line; True when it changed the progress."""
        event = parse_event(line)
        if event is None:
            return False
        handler = EVENT_HANDLERS.get(event["event"])
        if handler is None:
            return False
        handler(self, event)
        return True

    def feed_text(self, text: str) -> None:
        for line in text.splitlines():
            self.feed(line)

    @property
    def epoch_text(self) -> str | None:
        if self.epoch is None or self.epochs is None:
            return None
        return f"{self.epoch}/{self.epochs}"


def parse_event(line: str | bytes) -> dict[str, Any] | None:
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    return event


def numbers(values: Any) -> dict[str, float]:
    """The finite numeric entries of a metrics mapping, rounded for `kubectl get` columns."""
    if not isinstance(values, dict):
        return {}
    return {
        str(key): round(value, 4)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _on_epoch(progress: TrainerProgress, event: dict[str, Any]) -> None:
    if progress.stage != event.get("stage"):
        progress.best = {}  # a new stage starts its own race
    progress.stage = event.get("stage")
    progress.epoch = _int(event.get("epoch"))
    progress.epochs = _int(event.get("epochs"))
    progress.latest = numbers(event.get("metrics"))
    if _better(progress.latest, progress.best):
        progress.best = dict(progress.latest)


def _on_features(progress: TrainerProgress, event: dict[str, Any]) -> None:
    progress.stage = "features"
    if isinstance(event.get("cacheHit"), bool):
        progress.cache_hit = event["cacheHit"]


def _on_resume(progress: TrainerProgress, event: dict[str, Any]) -> None:
    progress.resumed_epoch = _int(event.get("epoch"))
    if event.get("stage"):
        progress.stage = event["stage"]


def _on_summary(progress: TrainerProgress, event: dict[str, Any]) -> None:
    progress.summary = event
    if isinstance(event.get("cacheHit"), bool):
        progress.cache_hit = event["cacheHit"]


def _on_error(progress: TrainerProgress, event: dict[str, Any]) -> None:
    if isinstance(event.get("message"), str):
        progress.error = event["message"]


EVENT_HANDLERS = {
    "epoch": _on_epoch,
    "features": _on_features,
    "resume": _on_resume,
    "summary": _on_summary,
    "error": _on_error,
    "terminated": _on_error,
}


def _better(latest: dict[str, float], best: dict[str, float]) -> bool:
    """Lower validation loss wins, as the trainer's own model selection decides by default."""
    if "val_loss" in latest:
        return "val_loss" not in best or latest["val_loss"] < best["val_loss"]
    if "val_accuracy" in latest:
        return latest["val_accuracy"] > best.get("val_accuracy", -1.0)
    return not best


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
