"""Resume state in <output>/checkpoints/: what a killed run needs to go on where it was.

After every epoch the stage's weights (with the optimizer's state) go to a new file, then
state.json, which names that file, replaces the old one. A kill at any moment leaves a state.json
that points at complete weights: the next run loses at most the epoch in progress.

state.json also records what the weights were trained on (the dataset's fingerprint, the backbone
weights' digest): the spec alone does not say it, and resuming on moved or added images would go
on from weights fitted to other labels.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import keras

from ict_trainer import faults
from ict_trainer.errors import OutputError
from ict_trainer.scratch import make_scratch

log = logging.getLogger(__name__)

PREFIX = "checkpoints"
STATE = f"{PREFIX}/state.json"


class Checkpoints:
    def __init__(self, store, digest: str, inputs: dict[str, str]):
        """inputs: {"dataset": fingerprint digest, "weights": backbone weights digest}."""
        self.store, self.digest, self.inputs = store, digest, inputs
        self.state: dict = {"specDigest": digest, "inputs": inputs, "stages": {}}
        self.workdir = make_scratch("checkpoints")

    def load(self, overwrite: bool) -> dict:
        """Reads the state a previous run left, if it belongs to this spec."""
        if not self.store.exists(STATE):
            return {}
        found = json.loads(self.store.get_bytes(STATE))
        if found.get("specDigest") != self.digest:
            if not overwrite:
                raise OutputError(
                    f"output {self.store.uri!r} holds checkpoints of a different spec "
                    f"(digest {found.get('specDigest')!r}, this run {self.digest!r}). Choose "
                    "another output, or pass --overwrite (output.overwrite: true) to start over."
                )
            self.store.delete_prefix(PREFIX)
            return {}
        changed = sorted(
            name
            for name in self.inputs
            if (found.get("inputs") or {}).get(name) != self.inputs[name]
        )
        if changed:
            if not overwrite:
                raise OutputError(
                    f"output {self.store.uri!r} holds checkpoints of this spec trained on other "
                    f"input ({' and '.join(changed)} changed since: "
                    f"{(found.get('inputs') or {})!r}, now {self.inputs!r}); resuming would go "
                    "on from weights fitted to other images or labels. Pass --overwrite "
                    "(output.overwrite: true) to start over, or restore the data."
                )
            self.store.delete_prefix(PREFIX)
            return {}
        self.state = found
        return copy.deepcopy(found["stages"])  # commits go on changing self.state

    def stage(self, name: str) -> dict | None:
        return self.state["stages"].get(name)

    def fetch_weights(self, name: str) -> Path:
        """Downloads the stage's last weights to a local file."""
        key = self.state["stages"][name]["weights"]
        local = self.workdir / name / Path(key).name
        self.store.download(key, local)
        return local

    def commit(self, name: str, epoch: int, weights: Path, history: dict, complete: bool) -> None:
        previous = self.state["stages"].get(name, {}).get("weights")
        label = "final" if complete else f"epoch-{epoch:04d}"
        key = f"{PREFIX}/{name}/{label}.weights.h5"
        self.store.upload(weights, key)
        self.state["stages"][name] = {
            "epoch": epoch,
            "complete": complete,
            "weights": key,
            "history": history,
        }
        self.store.put_bytes(STATE, json.dumps(self.state, indent=1).encode())
        if previous and previous != key:
            self.store.delete(previous)

    def clear(self) -> None:
        self.store.delete_prefix(PREFIX)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class StageBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore (weights + optimizer + epoch, restored at train begin), with each
    epoch's backup committed to the output's checkpoints/ as well."""

    def __init__(self, checkpoints: Checkpoints, stage: str, history: dict):
        self.local = checkpoints.workdir / stage
        super().__init__(str(self.local), delete_checkpoint=False)
        self.checkpoints, self.stage = checkpoints, stage
        self.history = {key: list(values) for key, values in history.items()}

    def prime(self, weights: Path, epoch: int) -> None:
        """Lays a committed epoch out where BackupAndRestore restores from."""
        self.local.mkdir(parents=True, exist_ok=True)
        weights.replace(self._weights_path)
        Path(self._training_metadata_path).write_text(json.dumps({"epoch": epoch, "batch": 0}))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        for key, value in (logs or {}).items():
            if key != "learning_rate":
                self.history.setdefault(key, []).append(float(value))
        self.checkpoints.commit(
            self.stage, epoch + 1, Path(self._weights_path), self.history, complete=False
        )
        faults.kill_point(f"epoch-end:{self.stage}:{epoch + 1}")

    def finish(self, epochs: int) -> None:
        """Commits the weights the stage ends with (after early stopping's restore)."""
        final = self.local / "final.weights.h5"
        self.model.save_weights(final, overwrite=True)
        self.checkpoints.commit(self.stage, epochs, final, self.history, complete=True)
