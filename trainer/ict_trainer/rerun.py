"""Whether an output already holds this very training, so that a re-run has nothing to do.

An output is up to date when its metrics.json (published last, so the training it describes is
complete) records this run's spec digest and the same inputs (the dataset's fingerprint digest
and the backbone weights' digest, as checkpoints record them), and every artifact is still
there. `ict train` then trains and publishes nothing and reports the recorded results;
`--overwrite` always trains.
"""

from __future__ import annotations

import json
import logging

from ict_trainer.checkpoints import PREFIX
from ict_trainer.errors import StorageError

log = logging.getLogger(__name__)

# metrics.json's key for what the training was fitted on: {"dataset": ..., "weights": ...}.
INPUTS = "inputs"
_INPUT_NAMES = {"dataset": "dataset", "weights": "backbone weights"}


def stale_reason(
    recorded: dict, digest: str, inputs: dict[str, str], missing: list[str]
) -> str | None:
    """Why the training recorded in a metrics.json is not this run's (None: it is, whole)."""
    if recorded.get("specDigest") != digest:
        return f"it holds another spec's training (digest {recorded.get('specDigest')!r})"
    found = recorded.get(INPUTS)
    if not isinstance(found, dict):
        return "its metrics.json records no inputs (written by an earlier ict)"
    changed = [name for name in inputs if found.get(name) != inputs[name]]
    if changed:
        what = " and ".join(_INPUT_NAMES.get(name, name) for name in changed)
        return f"the {what} changed since it was trained ({found!r}, now {inputs!r})"
    if missing:
        return f"it lacks {', '.join(missing)}"
    return None


def up_to_date_message(uri: str, digest: str) -> str:
    return (
        f"output {uri!r} is up to date (spec digest {digest}, same dataset and weights): "
        "nothing to train; pass --overwrite (output.overwrite: true) to train again"
    )


def finished_training(
    store, metrics_key: str, artifacts: tuple[str, ...], digest: str, inputs: dict[str, str]
) -> dict | None:
    """The output's metrics.json when it holds this training, whole; else None, and a log line
    saying why a training found there is trained again."""
    if not store.exists(metrics_key):
        return None
    try:
        recorded = json.loads(store.get_bytes(metrics_key))
    except (ValueError, StorageError) as exc:
        log.info("training again: %s is unreadable (%s)", store.uri_of(metrics_key), exc)
        return None
    if not isinstance(recorded, dict):
        return None
    missing = [name for name in artifacts if name != metrics_key and not store.exists(name)]
    reason = stale_reason(recorded, digest, inputs, missing)
    if reason:
        log.info("training output %r again: %s", store.uri, reason)
        return None
    # A kill between publishing and clearing leaves the finished run's checkpoints behind.
    store.delete_prefix(PREFIX)
    return recorded
