"""The three recipes. Each is a function of a RunContext; STRATEGIES maps the spec's name to it."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ict_api.spec import FineTuneSpec, ImageClassifierTrainingSpec, Strategy, TrainingSpec
from ict_trainer import backbones, models, selection
from ict_trainer.augment import augmented_pass, build_augmenter
from ict_trainer.checkpoints import Checkpoints, StageBackup
from ict_trainer.data import Dataset, Sample
from ict_trainer.features import FeatureCache, cache_key
from ict_trainer.pipeline import (
    array_dataset,
    decode_labels,
    encode_labels,
    image_dataset,
    steps_per_epoch,
)
from ict_trainer.progress import EpochReporter, Reporter
from ict_trainer.sources import DataSource

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    spec: ImageClassifierTrainingSpec
    source: DataSource
    image_size: int
    reporter: Reporter
    distribution: tf.distribute.Strategy
    weights: str  # "imagenet", "none" or a local file
    cache: FeatureCache | None = None
    checkpoints: Checkpoints | None = None

    @property
    def dataset(self) -> Dataset:
        return self.source.dataset

    @property
    def num_classes(self) -> int:
        return len(self.dataset.class_names)

    def images(self, split: str, *, train: bool, first_epoch: int = 0) -> tf.data.Dataset:
        samples = getattr(self.source.fetch(), split)
        training = self.spec.training
        return image_dataset(
            samples,
            self.num_classes,
            self.image_size,
            training.batch_size,
            shuffle_seed=training.seed if train else None,
            augmenter=build_augmenter(self.spec.augmentation, training.seed) if train else None,
            first_epoch=first_epoch,
            cache=self.spec.cache.images,
        )

    def compile(
        self, model: keras.Model, stage: TrainingSpec | FineTuneSpec, steps_per_epoch: int
    ) -> None:
        """Compiles with the stage's optimizer (training: scratch and head; fineTune) and its
        schedule over epochs of steps_per_epoch steps."""
        learning_rate = models.learning_rate_schedule(
            stage.schedule,
            stage.learning_rate,
            steps=stage.epochs * steps_per_epoch,
            warmup_steps=stage.warmup_epochs * steps_per_epoch,
        )
        models.compile_model(
            model,
            self.num_classes,
            optimizer=stage.optimizer,
            learning_rate=learning_rate,
            momentum=getattr(stage, "momentum", 0.0),
            weight_decay=getattr(stage, "weight_decay", 0.0),
            label_smoothing=self.spec.training.label_smoothing,
        )

    def unlabelled(self, samples: list[Sample]) -> tf.data.Dataset:
        """Images in file order, for predictions."""
        return image_dataset(
            samples,
            self.num_classes,
            self.image_size,
            self.spec.training.batch_size,
            with_labels=False,
        )

    def image_splits(self, first_epoch: int) -> StageData:
        return StageData(
            self.images("train", train=True, first_epoch=first_epoch),
            self.images("validation", train=False),
            steps_per_epoch(len(self.source.fetch().train), self.spec.training.batch_size),
        )


@dataclass
class StageData:
    train: tf.data.Dataset  # endless (pipeline.epoch_stream), from the stage's first epoch to run
    validation: tf.data.Dataset
    steps_per_epoch: int


class EpochSeeds(keras.callbacks.Callback):
    """Dropout's (and every other layer's) random state set from (seed, epoch) when an epoch
    begins: epoch N draws the same masks whether the run went through epochs 1..N-1 in this
    process or resumed from their checkpoint."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        generators = [g for layer in self.model._flatten_layers() for g in layer._seed_generators]
        for index, generator in enumerate(generators):
            state = [self.seed * 1_000_003 + index, epoch * 2**20]
            generator.state.assign(np.asarray(state, dtype=generator.state.dtype))


@dataclass
class TrainResult:
    model: keras.Model | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    stage_starts: list[tuple[str, int]] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    cache_hit: bool | None = None
    unfrozen_layers: list[str] = field(default_factory=list)
    saved: selection.Saved | None = None  # whose weights the model holds
    kept_head: bool | None = None  # finetune only: the fine-tuned stage was worse and undone
    # (probabilities, true labels, files) of the validation images when the strategy already
    # has them (bottleneck: from cached features); else they are predicted from the images.
    validation: tuple[np.ndarray, np.ndarray, list[Path]] | None = None


def fit_stage(
    ctx: RunContext,
    result: TrainResult,
    stage: str,
    model: keras.Model,
    data: Callable[[int], StageData],
    epochs: int,
) -> None:
    """Trains one stage, resuming from or skipping past what checkpoints hold."""
    saved = ctx.checkpoints.stage(stage) if ctx.checkpoints else None
    stopping = ctx.spec.training.early_stopping
    if saved and saved["complete"]:
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(ctx.checkpoints.fetch_weights(stage))
        ctx.reporter.emit("resume", stage=stage, epoch=saved["epoch"], complete=True)
        _record(result, stage, saved["history"], stopping)
        return
    callbacks: list[keras.callbacks.Callback] = [
        EpochSeeds(ctx.spec.training.seed),
        EpochReporter(ctx.reporter, stage, epochs),
    ]
    stopper = selection.stopping_callback(stopping)
    if stopper:
        callbacks.append(stopper)
    backup = None
    if ctx.checkpoints:
        # First, so that an epoch's progress line is printed once it is safe in checkpoints.
        backup = StageBackup(ctx.checkpoints, stage, saved["history"] if saved else {})
        callbacks.insert(0, backup)
        if saved:
            backup.prime(ctx.checkpoints.fetch_weights(stage), saved["epoch"])
            log.info("resuming stage %s after epoch %d of %d", stage, saved["epoch"], epochs)
            ctx.reporter.emit("resume", stage=stage, epoch=saved["epoch"], complete=False)
    stage_data = data(saved["epoch"] if saved else 0)
    started = time.monotonic()
    fitted = model.fit(
        stage_data.train,
        validation_data=stage_data.validation,
        steps_per_epoch=stage_data.steps_per_epoch,
        epochs=epochs,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=callbacks,
        verbose=ctx.reporter.keras_verbose,
    )
    if backup:
        backup.finish(len(backup.history.get("loss", [])))
        history = backup.history
    else:
        history = fitted.history
    _record(result, stage, history, stopping, stopper, time.monotonic() - started)


def _record(
    result: TrainResult,
    stage: str,
    history: dict,
    stopping,
    stopper: keras.callbacks.EarlyStopping | None = None,
    seconds: float | None = None,
) -> None:
    if seconds is not None:
        result.durations[stage] = round(seconds, 3)
    first = len(result.history.get("loss", [])) + 1
    result.stage_starts.append((stage, first))
    history = {
        key: [float(v) for v in values] for key, values in history.items() if key != "learning_rate"
    }
    for name, values in history.items():
        result.history.setdefault(name, []).extend(values)
    result.saved = selection.stage_choice(stage, first, history, stopping, stopper)


def train_scratch(ctx: RunContext) -> TrainResult:
    spec, result = ctx.spec, TrainResult()
    with ctx.distribution.scope():
        model = models.build_scratch_model(
            (ctx.image_size, ctx.image_size, 3),
            ctx.num_classes,
            filters=spec.model.scratch_filters,
            batch_norm=spec.model.batch_norm,
            pooling=spec.model.pooling,
            dense_units=spec.model.dense_units,
            dropout=spec.model.dropout,
            rescale=spec.augmentation.rescale,
        )
        steps = steps_per_epoch(len(ctx.source.fetch().train), spec.training.batch_size)
        ctx.compile(model, spec.training, steps)
    fit_stage(ctx, result, "train", model, ctx.image_splits, spec.training.epochs)
    result.model = model
    return result


def seed_builds(seed: int, model: str) -> None:
    """Seeds Python's random, from which Keras draws the seeds of unseeded initializers, from
    the run's seed and the model about to be built: its initial weights then do not depend on
    what was built before it (a cache hit builds the head first, a miss the backbone)."""
    random.seed(f"{seed}:{model}")


def _extractor(ctx: RunContext) -> tuple[keras.Model, keras.Model]:
    spec = ctx.spec.model
    seed_builds(ctx.spec.training.seed, "backbone")
    sizes = [spec.image_size, *(spec.feature_scales or ())]
    # One size: the base's input is fixed, as ever; several share a base of any input size.
    base_size = spec.image_size if len(sizes) == 1 else None
    base = backbones.build_base(spec.backbone, base_size, ctx.weights, spec.alpha)
    extractor = models.build_feature_extractor(
        base, backbones.preprocessing_layer(spec.backbone), spec.pooling, sizes
    )
    return base, extractor


def bottleneck_features(ctx: RunContext, extractor: Callable[[], keras.Model], result: TrainResult):
    """Features and labels of both splits, from the cache when it holds them; the extractor
    is asked for only when they are computed."""
    key = None
    augmentation, seed = ctx.spec.augmentation, ctx.spec.training.seed
    augmenter = build_augmenter(augmentation, seed)
    passes = augmentation.feature_passes if augmenter is not None else 0
    if ctx.cache is not None:
        spec = ctx.spec.model
        key = cache_key(
            ctx.source.fingerprint(),
            backbone=spec.backbone.value,
            alpha=spec.alpha,
            weights=backbones.weights_digest(ctx.weights),
            image_size=spec.image_size,
            pooling=spec.pooling.value,
            feature_passes=passes,
            augmentation={**augmentation.model_dump(mode="json"), "seed": seed},
            feature_scales=spec.feature_scales,
        )
        cached = ctx.cache.load(key)
        if cached is not None:
            result.cache_hit = True
            ctx.reporter.emit("features", cacheHit=True, key=key, uri=ctx.cache.uri(key))
            _adopt_checked_files(ctx.dataset, cached["arrays"], cached["manifest"])
            return cached["arrays"]
    dataset = ctx.source.fetch()
    started = time.monotonic()
    arrays = {}
    for split in ("train", "validation"):
        samples = getattr(dataset, split)
        images = ctx.unlabelled(samples)
        features = extractor().predict(images, verbose=ctx.reporter.keras_verbose)
        # float32 whatever the precision policy: a hit and a miss then train on the same numbers.
        arrays[f"{split}_features"] = np.asarray(features, dtype=np.float32)
        if split == "train" and passes:
            augmented = [
                extractor().predict(
                    augmented_pass(images, augmenter, seed, index),
                    verbose=ctx.reporter.keras_verbose,
                )
                for index in range(passes)
            ]
            # Pass-major rows: row p * n + i is image i's features in pass p.
            arrays["train_augmented_features"] = np.concatenate(augmented).astype(np.float32)
        arrays[f"{split}_labels"] = encode_labels([s.label for s in samples], ctx.num_classes)
        # Which files the rows are: on a cache hit the images themselves are not at hand.
        arrays[f"{split}_files"] = np.array(
            [s.path.relative_to(dataset.root).as_posix() for s in samples]
        )
    result.durations["features"] = round(time.monotonic() - started, 3)
    result.cache_hit = False if ctx.cache is not None else None
    if ctx.cache is not None:
        skipped = [[p.relative_to(dataset.root).as_posix(), why] for p, why in dataset.skipped]
        ctx.cache.save(key, arrays, {"classNames": dataset.class_names, "skipped": skipped})
    ctx.reporter.emit(
        "features",
        cacheHit=False,
        key=key,
        uri=ctx.cache.uri(key) if ctx.cache is not None else None,
    )
    return arrays


def _adopt_checked_files(dataset: Dataset, arrays: dict, manifest: dict) -> None:
    """On a cache hit, the dataset is what the run that filled the cache checked: a bucket
    listing also names files that proved unusable (truncated, not images)."""
    for split in ("train", "validation"):
        labels = decode_labels(arrays[f"{split}_labels"])
        files = arrays[f"{split}_files"]
        samples = [
            Sample(dataset.root / str(f), int(k)) for f, k in zip(files, labels, strict=True)
        ]
        setattr(dataset, split, samples)
    dataset.skipped = [(dataset.root / path, why) for path, why in manifest.get("skipped", [])]


def head_training_rows(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) the head trains on: the images' own features, then those of each
    augmented pass (augmentation.featurePasses), labels repeated to match."""
    features = [arrays["train_features"]]
    if "train_augmented_features" in arrays:
        features.append(arrays["train_augmented_features"])
    stacked = np.concatenate(features)
    repeats = len(stacked) // len(arrays["train_features"])
    return stacked, np.concatenate([arrays["train_labels"]] * repeats)


def _train_head(
    ctx: RunContext, extractor: Callable[[], keras.Model], result: TrainResult
) -> keras.Model:
    spec = ctx.spec
    arrays = bottleneck_features(ctx, extractor, result)

    seed_builds(spec.training.seed, "head")
    with ctx.distribution.scope():
        head = models.build_head(
            arrays["train_features"].shape[1:],
            ctx.num_classes,
            dense_units=spec.model.dense_units,
            dropout=spec.model.dropout,
        )
    batch, seed = spec.training.batch_size, spec.training.seed
    features, labels = head_training_rows(arrays)
    with ctx.distribution.scope():
        ctx.compile(head, spec.training, steps_per_epoch(len(features), batch))

    def data(first_epoch: int) -> StageData:
        return StageData(
            array_dataset(features, labels, batch, seed, first_epoch),
            array_dataset(arrays["validation_features"], arrays["validation_labels"], batch),
            steps_per_epoch(len(features), batch),
        )

    fit_stage(ctx, result, "head", head, data, spec.training.epochs)
    labels = arrays["validation_labels"]
    result.validation = (
        head.predict(arrays["validation_features"], verbose=0),
        decode_labels(labels),
        [ctx.dataset.root / name for name in arrays["validation_files"]],
    )
    return head


def train_bottleneck(ctx: RunContext) -> TrainResult:
    """The backbone is built once: before the features on a cache miss, after the head on a
    hit (only model.keras needs it then)."""
    result = TrainResult()

    @functools.cache
    def extractor() -> keras.Model:
        with ctx.distribution.scope():
            return _extractor(ctx)[1]

    head = _train_head(ctx, extractor, result)
    started = time.monotonic()
    with ctx.distribution.scope():
        result.model = models.build_classifier(extractor(), head)
    result.durations["classifier"] = round(time.monotonic() - started, 3)
    return result


def train_finetune(ctx: RunContext) -> TrainResult:
    spec, result = ctx.spec, TrainResult()
    with ctx.distribution.scope():
        base, extractor = _extractor(ctx)
        # Before the head stage, so that a wrong block or layer name costs no training; the
        # features are predicted in inference mode, whatever is trainable.
        patterns = backbones.block_patterns(
            spec.model.backbone, spec.fine_tune.blocks, spec.fine_tune.layers
        )
        result.unfrozen_layers = backbones.unfreeze(base, patterns)
    head = _train_head(ctx, lambda: extractor, result)
    with ctx.distribution.scope():
        model = models.build_classifier(extractor, head)
        steps = steps_per_epoch(len(ctx.source.fetch().train), spec.training.batch_size)
        ctx.compile(model, spec.fine_tune, steps)
    log.info("fine-tuning %d layers: %s", len(result.unfrozen_layers), result.unfrozen_layers)
    head_saved, head_validation = result.saved, result.validation
    head_weights = model.get_weights()
    result.validation = None  # the head's predictions no longer describe the model
    fit_stage(ctx, result, "finetune", model, ctx.image_splits, spec.fine_tune.epochs)
    result.model = model
    keep_head_if_worse(result, head_saved, head_weights, head_validation, spec.training)
    return result


def keep_head_if_worse(result: TrainResult, head_saved, head_weights, head_validation, training):
    """Undoes a fine-tune stage that ended worse than the head it started from
    (selection.fine_tune_wins says which is better)."""
    monitor = training.early_stopping.monitor
    if not result.history.get(monitor.value):  # no validation metric: nothing to judge by
        return
    head_epoch, tuned_epoch = head_saved.run_epoch, result.saved.run_epoch
    wins, decided_by = selection.fine_tune_wins(result.history, head_epoch, tuned_epoch, monitor)
    result.kept_head = not wins
    if wins:
        return
    values = result.history[decided_by]
    log.warning(
        "fine-tuning ended worse than the head it started from (%s %.4f, head %.4f): "
        "publishing the head's model",
        decided_by,
        values[tuned_epoch - 1],
        values[head_epoch - 1],
    )
    result.model.set_weights(head_weights)
    result.validation = head_validation
    why = f"head kept: the fine-tuned model's {decided_by} was worse"
    result.saved = selection.Saved("head", head_saved.stage_epoch, head_saved.run_epoch, why)


STRATEGIES: dict[Strategy, Callable[[RunContext], TrainResult]] = {
    Strategy.SCRATCH: train_scratch,
    Strategy.BOTTLENECK: train_bottleneck,
    Strategy.FINETUNE: train_finetune,
}


def validation_predictions(ctx: RunContext, result: TrainResult):
    """(probabilities, labels, files) of the validation set under the final model."""
    if result.validation is not None:
        return result.validation
    samples = ctx.source.fetch().validation
    probabilities = result.model.predict(ctx.unlabelled(samples), verbose=0)
    return probabilities, np.array([s.label for s in samples]), [s.path for s in samples]
