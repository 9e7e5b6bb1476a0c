"""Defaults that depend on the strategy, and the one function that applies them.

A field listed in STRATEGY_DEFAULTS is `None` in the spec when the user left it unset, which
means "the strategy's default". `resolve_defaults` replaces every such `None` with the value the
table gives for the spec's strategy; the trainer, metrics.json, the spec digest and the feature
cache key all see the resolved spec. The CRD's descriptions of these fields are written from the
same table (`unset_means`), so `kubectl explain` says what the trainer does.

This module imports nothing from spec.py (spec.py imports it for the descriptions).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

STRATEGIES = ("scratch", "bottleneck", "finetune")
BACKBONE_IMAGE_SIZE = 224  # native input side of every backbone ict offers
BLOG_RESCALE = 1 / 255
# A strategy default that model.architecture gives (ARCHITECTURE_DEFAULTS).
BY_ARCHITECTURE = "by model.architecture"
# A strategy default computed from the resolved model.imageSize and model.pooling.
BY_IMAGE_SIZE = "by model.imageSize"
# The extra feature size, as a ratio of imageSize: 288 px beside 224 measured best
# (bench/RESULTS.md), and a ratio keeps the default sensible at any imageSize.
FEATURE_SCALE_RATIO = 9 / 7
MAX_IMAGE_SIZE = 1024

# model.architecture -> the scratch convnet's shape, for the fields left unset. The blog's
# three blocks learn 2,000 images to about 0.80; four wider blocks with batch norm, trained
# longer with weight decay and a cosine schedule, generalise better (bench/RESULTS.md).
ARCHITECTURE_DEFAULTS: dict[str, dict[str, Any]] = {
    "blog": {
        "model.scratchFilters": [32, 32, 64],
        "model.batchNorm": False,
        "model.pooling": "flatten",
        "model.denseUnits": 64,
    },
    "wide": {
        "model.scratchFilters": [32, 64, 128, 128],
        "model.batchNorm": True,
        "model.pooling": "flatten",
        "model.denseUnits": 128,
    },
}

STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    # A head on cached features converges in a few dozen cheap epochs; a convnet from scratch
    # needs many more, affordable in bfloat16 (bench/RESULTS.md).
    "training.epochs": {"scratch": 100, "bottleneck": 50, "finetune": 50},
    # From scratch: AdamW's decoupled decay and a cosine decay of the rate, after a warm-up
    # (a freshly initialised convnet's first steps are fragile). Heads keep a constant
    # RMSprop rate: early stopping picks their epoch.
    "training.optimizer": {"scratch": "adamw", "bottleneck": "rmsprop", "finetune": "rmsprop"},
    "training.weightDecay": {"scratch": 0.05, "bottleneck": 0.0, "finetune": 0.0},
    "training.schedule": {"scratch": "cosine", "bottleneck": "constant", "finetune": "constant"},
    # The scratch convnet at the blog's 150 px; the backbones at their native size.
    "model.imageSize": {
        "scratch": 150,
        "bottleneck": BACKBONE_IMAGE_SIZE,
        "finetune": BACKBONE_IMAGE_SIZE,
    },
    # The scratch convnet's come with its architecture (ARCHITECTURE_DEFAULTS); the head on a
    # backbone's features pools them (a flattened VGG16 map is 25,088 wide) into 256 units.
    "model.pooling": {"scratch": BY_ARCHITECTURE, "bottleneck": "avg", "finetune": "avg"},
    "model.denseUnits": {"scratch": BY_ARCHITECTURE, "bottleneck": 256, "finetune": 256},
    # Features of augmented copies of the training images: the frozen base is run once per
    # pass and cached, so the head sees varied inputs at no cost per epoch (bench/RESULTS.md).
    "augmentation.featurePasses": {"scratch": 0, "bottleneck": 4, "finetune": 4},
    # A head on features fits its training rows within a few epochs; smoothed targets keep
    # its outputs from saturating (bench/RESULTS.md: +0.8 points on cats-dogs, +1.1 on the
    # five-class set). Scratch keeps the blog's plain loss (not measured there).
    "training.labelSmoothing": {"scratch": 0.0, "bottleneck": 0.1, "finetune": 0.1},
    "augmentation.rescale": {"scratch": BLOG_RESCALE, "bottleneck": None, "finetune": None},
    # The backbone sees each image at a second, larger size too, pooled features side by side:
    # about a point on cats-dogs photos (what carries the 0.97 and 0.98 targets), nothing on
    # the five-class set's upscaled thumbnails (bench/RESULTS.md).
    "model.featureScales": {"scratch": [], "bottleneck": BY_IMAGE_SIZE, "finetune": BY_IMAGE_SIZE},
    # A head on a few hundred feature vectors overfits within a few epochs (best validation
    # loss at epoch 3-4 of 50 measured), and fine-tuning can make things worse: both stop early
    # and keep their best epoch. Scratch runs its epochs, as the blog's does.
    "training.earlyStopping": {
        "scratch": {"enabled": False},
        "bottleneck": {"enabled": True},
        "finetune": {"enabled": True},
    },
}

# How a value reads in a description, where its JSON would not say it well.
_WORDS = {
    BLOG_RESCALE: "1/255",
    BY_ARCHITECTURE: "model.architecture's",
    BY_IMAGE_SIZE: (
        "[288] at imageSize 224 (9/7 of model.imageSize, to a multiple of 8; none with "
        "flatten pooling)"
    ),
    None: "none (the backbone's own preprocessing)",
    json.dumps([]): "none",
    json.dumps({"enabled": False}): "off",
    json.dumps({"enabled": True}): "on (the fields' defaults: valLoss, patience, best restored)",
}


def _say(value: Any) -> str:
    key = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
    return _WORDS.get(key, json.dumps(value))


def unset_means(path: str) -> str:
    """'Unset: A for scratch; B for bottleneck and finetune.' for a field of the table."""
    groups: dict[str, list[str]] = {}
    for strategy in STRATEGIES:
        groups.setdefault(_say(STRATEGY_DEFAULTS[path][strategy]), []).append(strategy)
    parts = [f"{value} for {' and '.join(names)}" for value, names in groups.items()]
    return f"Unset: {'; '.join(parts)}."


def defaults_for(strategy: str) -> dict[str, Any]:
    """Dotted wire path -> value that an unset field takes under strategy."""
    return {path: values[strategy] for path, values in STRATEGY_DEFAULTS.items()}


def default_feature_scales(image_size: int, pooling: str) -> list[int]:
    """model.featureScales when unset for a backbone: one larger size, where pooling gives
    features of the same width at every size and the size is one the spec allows."""
    extra = round(image_size * FEATURE_SCALE_RATIO / 8) * 8
    if pooling == "flatten" or extra > MAX_IMAGE_SIZE:
        return []
    return [extra]


Spec = TypeVar("Spec")


def resolve_defaults(spec: Spec) -> Spec:
    """The spec with every field left unset (None) replaced by its strategy's default.

    Explicit values always win. Idempotent: resolving a resolved spec returns an equal one.
    The result is validated again, so a default can never make a spec invalid unnoticed.
    """
    data = spec.model_dump(mode="json", by_alias=True)
    defaults = defaults_for(spec.strategy.value)
    if spec.strategy.value == "scratch":
        # The architecture's shape first: the table defers to it (BY_ARCHITECTURE).
        defaults = {**defaults, **ARCHITECTURE_DEFAULTS[data["model"]["architecture"]]}
    for path, value in defaults.items():
        *parents, leaf = path.split(".")
        section = data
        for key in parents:
            section = section[key]
        if section.get(leaf) is None:
            section[leaf] = value
    model = data["model"]
    if model["featureScales"] == BY_IMAGE_SIZE:
        model["featureScales"] = default_feature_scales(model["imageSize"], model["pooling"])
    return type(spec).model_validate(data)
