"""Pretrained convolutional bases: a table of keras.applications models and their particulars."""

from __future__ import annotations

import contextlib
import hashlib
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras.src.utils import file_utils  # what keras.applications download through

from ict_api.spec import Backbone
from ict_trainer.errors import ModelError

# ImageNet channel means in BGR order, as keras.applications' "caffe" preprocessing uses.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class BackboneInfo:
    constructor: Callable[..., keras.Model]
    preprocessing: str  # a key of PREPROCESSING
    # Regexes over layer names, one per block, topmost first: fineTune.blocks=N unfreezes
    # every layer matching one of the first N.
    blocks: tuple[str, ...]
    takes_alpha: bool = False


BACKBONES: dict[Backbone, BackboneInfo] = {
    Backbone.VGG16: BackboneInfo(
        keras.applications.VGG16,
        "caffe",
        tuple(f"block{i}_" for i in range(5, 0, -1)),
    ),
    Backbone.MOBILENET: BackboneInfo(
        keras.applications.MobileNet,
        "tf",
        (*tuple(rf"conv_(dw|pw)_{i}(_|$)" for i in range(13, 0, -1)), r"conv1(_|$)"),
        takes_alpha=True,
    ),
    Backbone.MOBILENET_V2: BackboneInfo(
        keras.applications.MobileNetV2,
        "tf",
        (
            r"(Conv_1|out_relu|block_16_)",
            *(f"block_{i}_" for i in range(15, 0, -1)),
            r"(Conv1|bn_Conv1|Conv1_relu|expanded_conv_)",
        ),
        takes_alpha=True,
    ),
    Backbone.RESNET50: BackboneInfo(
        keras.applications.ResNet50,
        "caffe",
        ("conv5_", "conv4_", "conv3_", "conv2_", "conv1_"),
    ),
    Backbone.EFFICIENTNETB0: BackboneInfo(
        keras.applications.EfficientNetB0,
        "none",  # the model rescales and normalises inside
        (r"(top_|block7)", *tuple(f"block{i}" for i in range(6, 0, -1)), "stem_"),
    ),
}


def _caffe_preprocessing() -> keras.layers.Layer:
    # RGB -> BGR and mean subtraction as a frozen 1x1 convolution: a built-in layer, so the
    # saved model loads with plain keras.saving.load_model, no custom objects.
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for out_channel in range(3):
        kernel[0, 0, 2 - out_channel, out_channel] = 1.0
    bias = -np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    return keras.layers.Conv2D(
        3,
        1,
        name="caffe_preprocessing",
        trainable=False,
        kernel_initializer=keras.initializers.Constant(kernel),
        bias_initializer=keras.initializers.Constant(bias),
    )


PREPROCESSING: dict[str, Callable[[], keras.layers.Layer | None]] = {
    "caffe": _caffe_preprocessing,
    "tf": lambda: keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="tf_preprocessing"),
    "none": lambda: None,
}


def preprocessing_layer(backbone: Backbone) -> keras.layers.Layer | None:
    return PREPROCESSING[BACKBONES[backbone].preprocessing]()


def build_base(
    backbone: Backbone, image_size: int | None, weights: str, alpha: float = 1.0
) -> keras.Model:
    """The convolutional base without its top, with weights 'imagenet', 'none' or a file;
    image_size None: one base for inputs of any size (model.featureScales)."""
    info = BACKBONES[backbone]
    kwargs = {"include_top": False, "input_shape": (image_size, image_size, 3)}
    if info.takes_alpha:
        kwargs["alpha"] = alpha
    elif alpha != 1.0:
        raise ModelError(
            f"model.alpha={alpha!r} applies to mobilenet and mobilenet_v2 only, not "
            f"{backbone.value!r}. Remove model.alpha."
        )
    if weights == "imagenet":
        return _imagenet_base(info, backbone, kwargs)
    if weights == "none":
        return info.constructor(weights=None, **kwargs)
    return _file_base(info, Path(weights), backbone, alpha, kwargs)


@contextlib.contextmanager
def _downloads_answered_by(path: Path) -> Iterator[None]:
    """keras.applications' weight download, answered by a local file for the time of a build."""
    download = file_utils.get_file
    file_utils.get_file = lambda *args, **kwargs: str(path)
    try:
        with warnings.catch_warnings():
            # which published file a size would download: moot with the file given
            warnings.filterwarnings("ignore", message=".*will be loaded as the default")
            yield
    finally:
        file_utils.get_file = download


def _file_base(
    info: BackboneInfo, path: Path, backbone: Backbone, alpha: float, kwargs: dict
) -> keras.Model:
    """Built by the 'imagenet' path, with the given file for the download: Keras builds some
    bases differently for 'imagenet' (EfficientNet adds an input Rescaling), and a file of
    ImageNet weights must give the features the download gives."""
    check_weights_file(path)
    try:
        with _downloads_answered_by(path):
            return info.constructor(weights="imagenet", **kwargs)
    except (ValueError, KeyError) as exc:
        raise ModelError(
            f"weights file {str(path)!r} does not fit backbone {backbone.value!r} "
            f"(alpha {alpha!r}): {_first_line(exc)}. Set model.backbone and model.alpha to the "
            "architecture the file was saved from."
        ) from exc
    except OSError as exc:
        raise ModelError(
            f"weights file {str(path)!r} is unreadable ({_first_line(exc)}): it is not a Keras "
            "weights file or it is damaged. Download it again."
        ) from exc


def _imagenet_base(info: BackboneInfo, backbone: Backbone, kwargs: dict) -> keras.Model:
    try:
        return info.constructor(weights="imagenet", **kwargs)
    except ValueError as exc:  # e.g. an alpha with no published weights
        raise ModelError(
            f"no ImageNet weights for {backbone.value!r} with these settings: {exc}. Change "
            "model.alpha or model.imageSize, or give model.weights a weights file."
        ) from exc
    except Exception as exc:  # download failures surface as many types (URLError, OSError...)
        raise ModelError(
            f"could not download ImageNet weights for {backbone.value!r} ({exc}). Without "
            "internet, give model.weights (or --weights) a local path or s3:// URI of a "
            "weights file."
        ) from exc


def check_weights_file(path: Path) -> None:
    if not path.is_file():
        raise ModelError(
            f"weights file {str(path)!r} does not exist. Fix model.weights (or --weights), or "
            "use 'imagenet' or 'none'."
        )
    if not path.name.endswith((".h5", ".hdf5", ".keras")):
        raise ModelError(
            f"weights file {str(path)!r} must end in .h5, .weights.h5 or .keras (Keras decides "
            "the format by the name). Rename it."
        )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def weights_digest(weights: str) -> str:
    """What identifies the weights in cache keys: the file's sha256, or the keyword."""
    if weights in ("imagenet", "none"):
        return f"{weights}@keras-{keras.__version__}"
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def block_patterns(backbone: Backbone, blocks: int, layers: list[str] | None) -> list[str]:
    """Regexes of the layers to unfreeze: explicit name prefixes, or the top N blocks."""
    if layers:
        return [re.escape(prefix) for prefix in layers]
    table = BACKBONES[backbone].blocks
    if blocks > len(table):
        raise ModelError(
            f"fineTune.blocks={blocks!r} but {backbone.value!r} has {len(table)} blocks. Use "
            f"at most {len(table)}."
        )
    return list(table[:blocks])


def unfreeze(base: keras.Model, patterns: list[str]) -> list[str]:
    """Freezes base except layers matching patterns; BatchNorm stays frozen (inference mode)

    because re-estimating its statistics on a few hundred images wrecks the features.
    Returns the names of the unfrozen layers.
    """
    base.trainable = True  # first: the setter propagates to every layer below
    unfrozen = []
    for layer in base.layers:
        wanted = any(re.match(pattern, layer.name) for pattern in patterns)
        batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = wanted and not batch_norm
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    if not unfrozen:
        names = sorted({re.split(r"_", layer.name)[0] for layer in base.layers})
        raise ModelError(
            f"no trainable layer matches {patterns!r} in {base.name!r}. Layer names start "
            f"with: {', '.join(names)}."
        )
    return unfrozen
