"""Model builders: each takes shapes and keyword hyperparameters and returns a Keras model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from ict_api.spec import Optimizer, Pooling, Schedule

POOLING: dict[Pooling, Callable[..., keras.layers.Layer]] = {
    Pooling.AVG: lambda name="pool": keras.layers.GlobalAveragePooling2D(name=name),
    Pooling.MAX: lambda name="pool": keras.layers.GlobalMaxPooling2D(name=name),
    Pooling.FLATTEN: lambda name="pool": keras.layers.Flatten(name=name),
}

# Every Keras optimizer applies a decoupled weight decay when given one (AdamW's is the same).
OPTIMIZERS: dict[Optimizer, Callable[..., keras.optimizers.Optimizer]] = {
    Optimizer.RMSPROP: lambda lr, momentum, decay: keras.optimizers.RMSprop(
        lr, momentum=momentum, weight_decay=decay
    ),
    Optimizer.ADAM: lambda lr, momentum, decay: keras.optimizers.Adam(lr, weight_decay=decay),
    Optimizer.ADAMW: lambda lr, momentum, decay: keras.optimizers.AdamW(
        lr, weight_decay=decay or 0.0
    ),
    Optimizer.SGD: lambda lr, momentum, decay: keras.optimizers.SGD(
        lr, momentum=momentum, weight_decay=decay
    ),
}


def output_layer(num_classes: int, name: str = "predictions") -> keras.layers.Layer:
    # float32 outputs keep the loss stable under mixed precision.
    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=name)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)


def build_scratch_model(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: list[int] = (32, 32, 64),
    batch_norm: bool = False,
    pooling: Pooling = Pooling.FLATTEN,
    dense_units: int = 64,
    dropout: float = 0.5,
    rescale: float = 1 / 255,
) -> keras.Model:
    """A small convnet in the blog's manner: conv/relu/max-pool blocks of `filters`, pooled,
    a dense layer, dropout, output (model.architecture picks the filters and dense units)."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(rescale, name="rescale")(inputs)
    for index, width in enumerate(filters, start=1):
        # Not after the first convolution: its maps are the largest, and batch norm there
        # costs more than the convolution on a CPU (bench/RESULTS.md).
        normalised = batch_norm and index > 1
        x = keras.layers.Conv2D(width, 3, use_bias=not normalised, name=f"conv{index}")(x)
        if normalised:
            # Fast-moving statistics: small datasets give few steps to settle them.
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = keras.layers.Activation("relu", name=f"relu{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = POOLING[pooling]()(x)
    outputs = classifier_head(x, num_classes, dense_units=dense_units, dropout=dropout)
    return keras.Model(inputs, outputs, name="scratch_convnet")


def classifier_head(x, num_classes: int, *, dense_units: int, dropout: float):
    if dense_units:
        x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return output_layer(num_classes)(x)


def build_head(
    feature_shape: tuple[int, ...],
    num_classes: int,
    *,
    dense_units: int = 256,
    dropout: float = 0.5,
) -> keras.Model:
    """The small dense model trained on bottleneck features."""
    inputs = keras.Input(feature_shape, name="features")
    outputs = classifier_head(inputs, num_classes, dense_units=dense_units, dropout=dropout)
    return keras.Model(inputs, outputs, name="head")


def build_feature_extractor(
    base: keras.Model,
    preprocessing: keras.layers.Layer | None,
    pooling: Pooling,
    sizes: Sequence[int] = (),
) -> keras.Model:
    """Raw images in [0, 255] -> one feature vector each; the base is frozen and runs in
    inference mode (fine-tuning unfreezes chosen blocks afterwards).

    sizes: the sides at which the base sees each image (imageSize, then featureScales), their
    pooled features concatenated in that order; the input is the largest, the others are
    antialiased resizes of it. Empty: the base's own input size, once."""
    base.trainable = False
    if len(sizes) <= 1:
        inputs = keras.Input(base.input_shape[1:], name="image")
        return keras.Model(
            inputs, _pooled(base, preprocessing, pooling, inputs), name="feature_extractor"
        )
    largest = max(sizes)
    inputs = keras.Input((largest, largest, 3), name="image")
    branches = []
    for size in sizes:
        x = inputs
        if size != largest:
            resize = keras.layers.Resizing(
                size,
                size,
                interpolation="bilinear",
                antialias=True,
                dtype="float32",  # raw pixels: bfloat16 would round them to steps of 2
                name=f"resize_{size}",
            )
            x = resize(x)
        branches.append(_pooled(base, preprocessing, pooling, x, suffix=f"_{size}"))
    features = keras.layers.Concatenate(name="scales")(branches)
    return keras.Model(inputs, features, name="feature_extractor")


def _pooled(base, preprocessing, pooling: Pooling, images, suffix: str = ""):
    x = preprocessing(images) if preprocessing is not None else images
    return POOLING[pooling](f"pool{suffix}")(base(x, training=False))


def build_classifier(extractor: keras.Model, head: keras.Model) -> keras.Model:
    """Raw images -> class probabilities: what is saved as model.keras."""
    inputs = keras.Input(extractor.input_shape[1:], name="image")
    return keras.Model(inputs, head(extractor(inputs)), name="classifier")


def learning_rate_schedule(
    schedule: Schedule, learning_rate: float, *, steps: int, warmup_steps: int = 0
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The rate of each of a stage's `steps` optimizer steps: constant, or a linear warm-up
    from 0 over warmup_steps then a cosine decay to 0 at the last step."""
    if schedule is Schedule.CONSTANT:
        return learning_rate
    warmup_steps = min(warmup_steps, steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else learning_rate,
        decay_steps=max(steps - warmup_steps, 1),
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def compile_model(
    model: keras.Model,
    num_classes: int,
    *,
    optimizer: Optimizer,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
) -> None:
    if num_classes == 2:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
        accuracy = keras.metrics.BinaryAccuracy(name="accuracy")
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate, momentum, weight_decay or None),
        loss=loss,
        metrics=[accuracy],
    )
