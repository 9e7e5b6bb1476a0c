"""model.featureScales: the spec's rules, the cache key, the multi-scale feature extractor."""

import keras
import numpy as np
import pytest

from ict_api import SpecError, load_document
from ict_api.defaults import resolve_defaults
from ict_api.spec import Backbone, ImageClassifierTrainingSpec, Pooling
from ict_trainer import backbones, models
from ict_trainer.artifacts import spec_digest
from ict_trainer.features import cache_key


def spec(strategy: str = "bottleneck", **model) -> ImageClassifierTrainingSpec:
    return resolve_defaults(
        ImageClassifierTrainingSpec.model_validate(
            {"dataset": {"uri": "d"}, "strategy": strategy, "model": model}
        )
    )


@pytest.mark.parametrize(
    ("strategy", "model", "expected"),
    [
        (
            "scratch",
            {"featureScales": [64]},
            "model.featureScales=[64] applies to the bottleneck and finetune strategies only",
        ),
        (
            "bottleneck",
            {"featureScales": [288], "pooling": "flatten"},
            "needs model.pooling avg or max",
        ),
        ("finetune", {"featureScales": [224]}, "repeats a size (model.imageSize is 224)"),
        ("bottleneck", {"imageSize": 64, "featureScales": [96, 96]}, "List each size once"),
        ("bottleneck", {"featureScales": [0]}, "spec.model.featureScales.0: got 0"),
    ],
)
def test_invalid_scales_name_the_field_and_the_fix(strategy, model, expected):
    with pytest.raises(SpecError) as error:
        load_document({"dataset": {"uri": "d"}, "strategy": strategy, "model": model})
    assert expected in str(error.value)


def test_the_input_size_is_the_largest_of_the_sizes():
    assert spec(featureScales=[288]).model.input_size == 288
    assert spec(imageSize=224, featureScales=[160]).model.input_size == 224
    assert spec("finetune", pooling="max", featureScales=[96, 320]).model.input_size == 320
    assert spec("scratch").model.input_size == 150


@pytest.mark.parametrize(
    ("strategy", "model", "expected"),
    [
        ("bottleneck", {}, [288]),  # 9/7 of the backbones' 224
        ("finetune", {"imageSize": 160}, [208]),  # 205.7, to a multiple of 8
        ("bottleneck", {"imageSize": 32}, [40]),
        ("finetune", {"pooling": "max"}, [288]),
        ("bottleneck", {"pooling": "flatten"}, []),  # widths would differ by size
        ("bottleneck", {"imageSize": 800}, []),  # 1,032 is past the largest size allowed
        ("bottleneck", {"featureScales": []}, []),  # the user's choice wins
        ("finetune", {"featureScales": [256, 320]}, [256, 320]),
        ("scratch", {}, []),
    ],
)
def test_unset_scales_add_one_size_nine_sevenths_of_the_image_size(strategy, model, expected):
    assert spec(strategy, **model).model.feature_scales == expected


def test_scales_change_the_digest():
    assert spec_digest(spec(featureScales=[])) != spec_digest(spec())
    assert spec_digest(spec(featureScales=[288])) == spec_digest(spec())  # the default
    assert spec_digest(spec(featureScales=[288, 320])) != spec_digest(spec(featureScales=[288]))


KEY = {
    "backbone": "mobilenet_v2",
    "alpha": 0.35,
    "weights": "sha256:aa",
    "image_size": 224,
    "pooling": "avg",
}
IMAGES = [["train", "cats", "cats/1.jpg", 10, "e1"]]


def test_the_cache_key_changes_with_the_scales_and_their_order():
    keys = {
        cache_key(IMAGES, **KEY, feature_scales=scales)
        for scales in (None, [288], [320], [288, 320], [320, 288])
    }
    assert len(keys) == 5
    assert cache_key(IMAGES, **KEY, feature_scales=[]) == cache_key(IMAGES, **KEY)


def multiscale(sizes, pooling=Pooling.AVG):
    base = backbones.build_base(Backbone.MOBILENET_V2, None, "none", alpha=0.35)
    preprocessing = backbones.preprocessing_layer(Backbone.MOBILENET_V2)
    return base, models.build_feature_extractor(base, preprocessing, pooling, sizes)


def test_the_extractor_concatenates_one_pooled_vector_per_size_from_the_largest_input():
    base, extractor = multiscale([32, 48])
    assert extractor.input_shape == (None, 48, 48, 3)
    assert extractor.output_shape == (None, 2 * 1280)
    # One base for all sizes: its weights are shared, not copied per branch.
    assert len(extractor.weights) == len(base.weights)

    images = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    features = np.asarray(extractor(images))
    resized = keras.layers.Resizing(32, 32, interpolation="bilinear", antialias=True)(images)
    # Concatenated in the order given: imageSize (here resized down), then the scales.
    small, large = one_size(base, 32)(resized), one_size(base, 48)(images)
    np.testing.assert_allclose(features[:, :1280], small, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features[:, 1280:], large, rtol=1e-4, atol=1e-5)


def one_size(base, size):
    """The one-size extractor of a copy of base's weights."""
    copy = backbones.build_base(Backbone.MOBILENET_V2, size, "none", alpha=0.35)
    copy.set_weights(base.get_weights())
    preprocessing = backbones.preprocessing_layer(Backbone.MOBILENET_V2)
    return models.build_feature_extractor(copy, preprocessing, Pooling.AVG)


def test_a_multiscale_classifier_saves_loads_and_predicts(tmp_path):
    _, extractor = multiscale([40, 32], Pooling.MAX)
    head = models.build_head(extractor.output_shape[1:], 3, dense_units=0)
    classifier = models.build_classifier(extractor, head)
    images = np.random.default_rng(1).uniform(0, 255, (2, 40, 40, 3)).astype("float32")
    classifier.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.input_shape == (None, 40, 40, 3)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), classifier(images), atol=1e-6)
