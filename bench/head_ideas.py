"""Bottleneck head ideas, measured one by one on cached MobileNetV2-0.35 features of cats-dogs.

Computes once (and keeps in --features, outside the repository) the pooled features of the
training images as they are, flipped, and in several augmented passes (the spec's default
augmentation), and of the validation images as they are and flipped. Then trains heads on them
with each idea and prints validation accuracy and loss of the best-val-loss epoch (restored, as
the trainer does), mean over seeds. Not a test: it prints figures.

    python bench/head_ideas.py                       # every idea, 3 seeds
    python bench/head_ideas.py --only baseline,passes4
    python bench/head_ideas.py --scales 224,288      # features at each size, concatenated
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(os.environ.get("ICT_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "datasets" / "cats-dogs"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_no_top.h5"
PASSES = 4


def compute_features(path: Path, data: Path, weights: Path, passes: int, size: int = 224) -> dict:
    import numpy as np
    import tensorflow as tf

    from ict_api.spec import AugmentationSpec, Backbone, Pooling
    from ict_trainer import backbones, models
    from ict_trainer.augment import build_augmenter
    from ict_trainer.data import load_dataset
    from ict_trainer.pipeline import encode_labels, image_dataset

    if path.exists():
        return dict(np.load(path))
    dataset = load_dataset(data, None, seed=1)
    classes = len(dataset.class_names)
    base = backbones.build_base(Backbone.MOBILENET_V2, size, str(weights), 0.35)
    extractor = models.build_feature_extractor(
        base, backbones.preprocessing_layer(Backbone.MOBILENET_V2), Pooling.AVG
    )
    augmenter = build_augmenter(AugmentationSpec(), seed=1)
    arrays, started = {}, time.monotonic()
    for split in ("train", "validation"):
        samples = getattr(dataset, split)
        images = image_dataset(samples, classes, size, 32, with_labels=False)
        arrays[f"{split}_labels"] = encode_labels([s.label for s in samples], classes)
        arrays[f"{split}_clean"] = extractor.predict(images, verbose=0)
        arrays[f"{split}_flip"] = extractor.predict(
            images.map(lambda x: tf.reverse(x, axis=[2])), verbose=0
        )
        if split == "train":
            for p in range(passes):

                def augment(index, x, p=p):
                    return augmenter(
                        x, training=True, seed=tf.stack([tf.constant(p, tf.int64), index])
                    )

                augmented = images.enumerate().map(augment)
                arrays[f"train_aug{p}"] = extractor.predict(augmented, verbose=0)
        print(f"{split} features: {time.monotonic() - started:.0f} s", flush=True)
    np.savez(path, **arrays)
    return arrays


def train_head(
    x,
    y,
    vx,
    vy,
    seed,
    *,
    units=256,
    dropout=0.5,
    optimizer="rmsprop",
    lr=1e-3,
    smoothing=0.0,
    weight_decay=0.0,
    epochs=50,
    patience=10,
    batch=32,
    tta=None,
):
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(x.shape[1:])
    h = inputs
    if units:
        h = keras.layers.Dense(units, activation="relu")(h)
    if dropout:
        h = keras.layers.Dropout(dropout)(h)
    binary = y.shape[1] == 1
    out = keras.layers.Dense(y.shape[1], activation="sigmoid" if binary else "softmax")(h)
    model = keras.Model(inputs, out)
    opt = {
        "rmsprop": lambda: keras.optimizers.RMSprop(lr),
        "adam": lambda: keras.optimizers.Adam(lr),
        "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=weight_decay),
    }[optimizer]()
    loss = keras.losses.BinaryCrossentropy if binary else keras.losses.CategoricalCrossentropy
    model.compile(opt, loss(label_smoothing=smoothing))
    stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
    history = model.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        validation_data=(vx, vy),
        callbacks=[stop],
        verbose=0,
        shuffle=True,
    )
    p = model.predict(vx, verbose=0)
    if tta is not None:
        p = (p + model.predict(tta, verbose=0)) / 2
    if binary:  # as two columns, so that one formula serves both
        p, vy = np.concatenate([1 - p, p], axis=1), np.concatenate([1 - vy, vy], axis=1)
    loss = -np.mean(np.sum(vy * np.log(p + 1e-7), axis=1))
    return {
        "acc": float(np.mean(p.argmax(axis=1) == vy.argmax(axis=1))),
        "loss": float(loss),
        "epochs": len(history.history["loss"]),
        "best": stop.best_epoch + 1,
    }


def ideas(a: dict) -> dict:
    import numpy as np

    y = a["train_labels"]
    clean, flip = a["train_clean"], a["train_flip"]
    aug = [a[f"train_aug{p}"] for p in range(PASSES)]

    def stack(*parts):
        return np.concatenate(parts), np.concatenate([y] * len(parts))

    return {
        "baseline": (stack(clean), {}),
        "flip": (stack(clean, flip), {}),
        "passes2": (stack(clean, *aug[:2]), {}),
        "passes4": (stack(clean, *aug), {}),
        "passes4+flip": (stack(clean, flip, *aug), {}),
        "tta": (stack(clean), {"tta": a["validation_flip"]}),
        "passes4+tta": (stack(clean, *aug), {"tta": a["validation_flip"]}),
        "linear": (stack(clean), {"units": 0, "dropout": 0.0}),
        "passes4+linear": (stack(clean, *aug), {"units": 0, "dropout": 0.0}),
        "smooth0.1": (stack(clean), {"smoothing": 0.1}),
        "passes4+smooth0.1": (stack(clean, *aug), {"smoothing": 0.1}),
        "adamw1e-4wd": (stack(clean), {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.05}),
        "passes4+adamw": (
            stack(clean, *aug),
            {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.05},
        ),
        "lr1e-4": (stack(clean), {"lr": 1e-4}),
        "passes4+lr1e-4": (stack(clean, *aug), {"lr": 1e-4}),
        "passes4+flip+linear": (stack(clean, flip, *aug), {"units": 0, "dropout": 0.0}),
        "passes4+linear+lr1e-4": (stack(clean, *aug), {"units": 0, "dropout": 0.0, "lr": 1e-4}),
        "passes4+linear+smooth0.1": (
            stack(clean, *aug),
            {"units": 0, "dropout": 0.0, "smoothing": 0.1},
        ),
        "passes4+linear+adamw": (
            stack(clean, *aug),
            {"units": 0, "dropout": 0.0, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05},
        ),
        "passes4+linear+tta": (
            stack(clean, *aug),
            {"units": 0, "dropout": 0.0, "tta": a["validation_flip"]},
        ),
        "passes2+linear": (stack(clean, *aug[:2]), {"units": 0, "dropout": 0.0}),
        "passes2+smooth0.1": (stack(clean, *aug[:2]), {"smoothing": 0.1}),
        "passes1+smooth0.1": (stack(clean, aug[0]), {"smoothing": 0.1}),
        "passes4+dropout0.7": (stack(clean, *aug), {"dropout": 0.7}),
        "passes4+smooth0.1+lr3e-4": (stack(clean, *aug), {"smoothing": 0.1, "lr": 3e-4}),
        "passes4+smooth0.1+lr1e-4": (stack(clean, *aug), {"smoothing": 0.1, "lr": 1e-4}),
        "passes4+smooth0.1+batch128": (stack(clean, *aug), {"smoothing": 0.1, "batch": 128}),
    }


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="train/ and validation/ folders")
    parser.add_argument("--features", type=Path, help="cache file (default: /tmp, per --data)")
    parser.add_argument("--only", default="")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--scales",
        default="224",
        help="input sizes of the backbone, comma-separated; several: their features side by side",
    )
    args = parser.parse_args()
    per_scale = []
    for size in (int(s) for s in args.scales.split(",")):
        suffix = "" if size == 224 else f"-{size}"
        default = Path(f"/tmp/ict-head-ideas-{args.data.name}{suffix}.npz")
        features = args.features if args.features and size == 224 else default
        per_scale.append(compute_features(features, args.data, WEIGHTS, PASSES, size))
    arrays = {
        key: per_scale[0][key]
        if key.endswith("_labels")
        else np.concatenate([scale[key] for scale in per_scale], axis=1)
        for key in per_scale[0]
    }
    chosen = [n for n in args.only.split(",") if n]
    for name, ((x, y), options) in ideas(arrays).items():
        if chosen and name not in chosen:
            continue
        started = time.monotonic()
        runs = [
            train_head(x, y, arrays["validation_clean"], arrays["validation_labels"], s, **options)
            for s in range(1, args.seeds + 1)
        ]
        print(
            json.dumps(
                {
                    "idea": name,
                    "acc": round(float(np.mean([r["acc"] for r in runs])), 4),
                    "accs": [r["acc"] for r in runs],
                    "loss": round(float(np.mean([r["loss"] for r in runs])), 4),
                    "bestEpochs": [r["best"] for r in runs],
                    "seconds": round(time.monotonic() - started, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
