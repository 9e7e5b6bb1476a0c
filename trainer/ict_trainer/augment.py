"""The blog's ImageDataGenerator options as Keras preprocessing layers."""

from __future__ import annotations

import keras

from ict_api.spec import AugmentationSpec


def augmentation_layers(spec: AugmentationSpec, seed: int) -> list[keras.layers.Layer]:
    """One layer per active option, in ImageDataGenerator's order (geometry, then flips).

    Ranges follow ImageDataGenerator: rotation in degrees, shifts as fractions of the side,
    zoom in [1 - z, 1 + z]. Each layer gets its own seed so that runs repeat.
    """
    if not spec.enabled:
        return []
    fill = {"fill_mode": spec.fill_mode.value, "fill_value": spec.cval}
    layers: list[keras.layers.Layer] = []
    if spec.rotation_range:
        layers.append(keras.layers.RandomRotation(spec.rotation_range / 360.0, seed=seed, **fill))
    if spec.width_shift_range or spec.height_shift_range:
        layers.append(
            keras.layers.RandomTranslation(
                spec.height_shift_range, spec.width_shift_range, seed=seed + 1, **fill
            )
        )
    if spec.shear_range:
        layers.append(
            keras.layers.RandomShear(spec.shear_range, spec.shear_range, seed=seed + 2, **fill)
        )
    if spec.zoom_range:
        layers.append(keras.layers.RandomZoom(spec.zoom_range, seed=seed + 3, **fill))
    flip = {
        (True, False): "horizontal",
        (False, True): "vertical",
        (True, True): "horizontal_and_vertical",
    }
    mode = flip.get((spec.horizontal_flip, spec.vertical_flip))
    if mode:
        layers.append(keras.layers.RandomFlip(mode, seed=seed + 4))
    return layers


def build_augmenter(spec: AugmentationSpec, seed: int) -> keras.Sequential | None:
    layers = augmentation_layers(spec, seed)
    return keras.Sequential(layers, name="augmentation") if layers else None
