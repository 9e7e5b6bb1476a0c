"""A backbone whose weights come from a file is the model the 'imagenet' download builds."""

from __future__ import annotations

import keras
import numpy as np
from keras.src.utils import file_utils

from ict_api.spec import Backbone
from ict_trainer import backbones


def test_efficientnet_from_a_file_gives_the_features_of_the_imagenet_path(tmp_path, monkeypatch):
    size = 32
    saved = tmp_path / "efficientnetb0_notop.weights.h5"
    keras.utils.set_random_seed(3)
    source = keras.applications.EfficientNetB0(
        weights=None, include_top=False, input_shape=(size, size, 3)
    )
    normalization = next(
        layer for layer in source.layers if isinstance(layer, keras.layers.Normalization)
    )  # ImageNet's statistics, as the published file holds them
    normalization.set_weights(
        [np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]), np.array(0)]
    )
    source.save_weights(saved)

    from_file = backbones.build_base(Backbone.EFFICIENTNETB0, size, str(saved))
    # The 'imagenet' path with its download answered by the same file (no network).
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(saved))
    downloaded = backbones.build_base(Backbone.EFFICIENTNETB0, size, "imagenet")

    assert len(from_file.layers) == len(downloaded.layers)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(
        from_file.predict(images, verbose=0), downloaded.predict(images, verbose=0), rtol=1e-5
    )
