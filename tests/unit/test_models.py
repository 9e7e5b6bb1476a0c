"""Augmentation mapping, model builders, backbone blocks and the feature cache key."""

import keras
import numpy as np
import pytest

from ict_api.spec import AugmentationSpec, Backbone, FillMode, Pooling, Schedule
from ict_trainer import backbones, models
from ict_trainer.augment import RandomAffine, build_augmenter
from ict_trainer.errors import ModelError
from ict_trainer.features import cache_key
from ict_trainer.strategies import head_training_rows
from tests.helpers import MOBILENET, MOBILENET_V2


def test_every_blog_option_maps_to_the_affine_layer():
    spec = AugmentationSpec(
        rotation_range=40,
        width_shift_range=0.2,
        height_shift_range=0.1,
        shear_range=0.2,
        zoom_range=0.3,
        horizontal_flip=True,
        vertical_flip=True,
        fill_mode=FillMode.REFLECT,
        cval=7,
    )
    layer = build_augmenter(spec, seed=1)
    assert isinstance(layer, RandomAffine)
    config = layer.get_config()
    assert {
        k: config[k]
        for k in (
            "rotation",
            "width_shift",
            "height_shift",
            "shear",
            "zoom",
            "horizontal_flip",
            "vertical_flip",
            "fill_mode",
            "fill_value",
            "seed",
        )
    } == {
        "rotation": 40,
        "width_shift": 0.2,
        "height_shift": 0.1,
        "shear": 0.2,
        "zoom": 0.3,
        "horizontal_flip": True,
        "vertical_flip": True,
        "fill_mode": "reflect",
        "fill_value": 7,
        "seed": 1,
    }
    assert isinstance(RandomAffine.from_config(config), RandomAffine)


def test_disabled_and_zero_options_build_no_augmenter():
    assert build_augmenter(AugmentationSpec(enabled=False), seed=0) is None
    none = AugmentationSpec(
        rotation_range=0,
        width_shift_range=0,
        height_shift_range=0,
        shear_range=0,
        zoom_range=0,
        horizontal_flip=False,
    )
    assert build_augmenter(none, seed=0) is None


PIXELS = np.random.default_rng(0).uniform(0, 255, (8, 12, 12, 3)).astype("float32")


def test_zero_ranges_and_inference_leave_images_unchanged():
    np.testing.assert_allclose(np.asarray(RandomAffine()(PIXELS)), PIXELS, atol=1e-3)
    busy = RandomAffine(rotation=90, zoom=0.5, shear=0.5, horizontal_flip=True)
    np.testing.assert_array_equal(np.asarray(busy(PIXELS, training=False)), PIXELS)


def test_flips_mirror_or_keep_each_image():
    out = np.asarray(RandomAffine(horizontal_flip=True, seed=1)(PIXELS))
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, PIXELS, strict=True)]
    kept = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, PIXELS, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert any(mirrored) and any(kept)


def test_shift_moves_content_by_at_most_the_range():
    image = np.zeros((1, 20, 20, 1), "float32")
    image[0, :, 10] = 255.0  # one bright column
    layer = RandomAffine(width_shift=0.2, fill_mode="constant", seed=0)
    for _ in range(5):
        column = int(np.argmax(np.asarray(layer(image))[0, 10, :, 0]))
        assert abs(column - 10) <= 4
    assert np.asarray(layer(np.repeat(image, 16, axis=0)))[:, 10].argmax(axis=1).std() > 0


def test_constant_fill_uses_cval():
    layer = RandomAffine(rotation=45, fill_mode="constant", fill_value=128, seed=0)
    out = np.asarray(layer(np.zeros((4, 16, 16, 3), "float32")))
    assert np.isclose(out[:, 0, 0], 128).any()


@pytest.mark.parametrize(("classes", "units"), [(2, 1), (5, 5)])
def test_scratch_model_shapes(classes, units):
    model = models.build_scratch_model((48, 48, 3), classes, filters=[8, 16], batch_norm=True)
    assert model.output_shape == (None, units)
    assert model.layers[1].name == "rescale"
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 2


def test_batch_norm_follows_every_convolution_but_the_first():
    model = models.build_scratch_model((64, 64, 3), 2, filters=[8, 16, 16], batch_norm=True)
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.startswith("bn")] == ["bn2", "bn3"]
    assert model.get_layer("conv1").use_bias and not model.get_layer("conv2").use_bias
    plain = models.build_scratch_model((64, 64, 3), 2, filters=[8, 16, 16])
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)


def test_head_and_classifier_take_raw_images():
    base = backbones.build_base(Backbone.MOBILENET_V2, 64, "none", alpha=0.35)
    extractor = models.build_feature_extractor(
        base, backbones.preprocessing_layer(Backbone.MOBILENET_V2), Pooling.AVG
    )
    head = models.build_head(extractor.output_shape[1:], 3, dense_units=8)
    classifier = models.build_classifier(extractor, head)
    assert extractor.output_shape == (None, 1280)
    assert classifier.input_shape == (None, 64, 64, 3)
    assert classifier.output_shape == (None, 3)


def test_trainable_layers_per_strategy():
    base = backbones.build_base(Backbone.VGG16, 32, "none")
    extractor = models.build_feature_extractor(
        base, backbones.preprocessing_layer(Backbone.VGG16), Pooling.AVG
    )
    head = models.build_head(extractor.output_shape[1:], 2, dense_units=4)
    classifier = models.build_classifier(extractor, head)
    # bottleneck: only the head learns
    assert {w.path.split("/")[0] for w in classifier.trainable_weights} == {
        "head_dense",
        "predictions",
    }
    # finetune: the head and the top block
    backbones.unfreeze(base, backbones.block_patterns(Backbone.VGG16, 1, None))
    assert {w.path.split("/")[0] for w in classifier.trainable_weights} == {
        "block5_conv1",
        "block5_conv2",
        "block5_conv3",
        "head_dense",
        "predictions",
    }
    assert not extractor.get_layer("caffe_preprocessing").trainable


def test_caffe_preprocessing_matches_keras_applications():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    layer = backbones.preprocessing_layer(Backbone.VGG16)
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(layer(images)), expected, rtol=1e-5, atol=1e-3)


def test_tf_preprocessing_matches_keras_applications():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    layer = backbones.preprocessing_layer(Backbone.MOBILENET_V2)
    expected = keras.applications.mobilenet_v2.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(layer(images)), expected, rtol=1e-5, atol=1e-5)


def test_finetune_unfreezes_the_top_block_only_and_keeps_batchnorm_frozen():
    base = backbones.build_base(Backbone.MOBILENET_V2, 64, "none", alpha=0.35)
    unfrozen = backbones.unfreeze(base, backbones.block_patterns(Backbone.MOBILENET_V2, 1, None))
    assert unfrozen == ["block_16_expand", "block_16_depthwise", "block_16_project", "Conv_1"]
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == set(unfrozen)
    two = backbones.unfreeze(base, backbones.block_patterns(Backbone.MOBILENET_V2, 2, None))
    assert "block_15_expand" in two and "block_14_expand" not in two


def test_vgg16_blocks_by_name_and_explicit_layers():
    base = backbones.build_base(Backbone.VGG16, 32, "none")
    top = backbones.unfreeze(base, backbones.block_patterns(Backbone.VGG16, 1, None))
    assert top == ["block5_conv1", "block5_conv2", "block5_conv3"]
    chosen = backbones.unfreeze(base, backbones.block_patterns(Backbone.VGG16, 1, ["block4_conv3"]))
    assert chosen == ["block4_conv3"]
    with pytest.raises(ModelError, match=r"no trainable layer matches .*Layer names start with"):
        backbones.unfreeze(base, backbones.block_patterns(Backbone.VGG16, 1, ["conv9"]))
    with pytest.raises(ModelError, match=r"fineTune.blocks=9 but 'vgg16' has 5 blocks"):
        backbones.block_patterns(Backbone.VGG16, 9, None)


@pytest.mark.parametrize("backbone", list(Backbone))
def test_every_backbone_builds_without_weights_and_names_its_top_block(backbone):
    base = backbones.build_base(backbone, 64, "none")
    assert backbones.unfreeze(base, backbones.block_patterns(backbone, 1, None))


def test_shared_weights_load_and_mismatches_are_explained(tmp_path):
    backbones.build_base(Backbone.MOBILENET_V2, 96, str(MOBILENET_V2), alpha=0.35)
    backbones.build_base(Backbone.MOBILENET, 96, str(MOBILENET), alpha=0.25)
    with pytest.raises(ModelError, match=r"does not fit backbone 'mobilenet_v2' \(alpha 1.0\)"):
        backbones.build_base(Backbone.MOBILENET_V2, 96, str(MOBILENET_V2), alpha=1.0)
    with pytest.raises(ModelError, match="does not fit backbone 'mobilenet'"):
        backbones.build_base(Backbone.MOBILENET, 96, str(MOBILENET_V2), alpha=0.35)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelError, match="is unreadable"):
        backbones.build_base(Backbone.MOBILENET_V2, 96, str(garbage), alpha=0.35)
    with pytest.raises(ModelError, match="does not exist"):
        backbones.build_base(Backbone.MOBILENET_V2, 96, str(tmp_path / "none.h5"), alpha=0.35)
    with pytest.raises(ModelError, match=r"alpha=0\.5 applies to mobilenet"):
        backbones.build_base(Backbone.VGG16, 96, "none", alpha=0.5)


BASE_KEY = {
    "backbone": "vgg16",
    "alpha": 1.0,
    "weights": "sha256:aa",
    "image_size": 150,
    "pooling": "avg",
}
IMAGES = [["train", "cats", "cats/1.jpg", 10, "e1"], ["validation", "dogs", "dogs/2.jpg", 12, "e2"]]


def test_cache_key_is_stable():
    assert cache_key(IMAGES, **BASE_KEY) == cache_key([list(r) for r in IMAGES], **BASE_KEY)
    assert len(cache_key(IMAGES, **BASE_KEY)) == 32


@pytest.mark.parametrize(
    "change",
    [
        {"backbone": "resnet50"},
        {"alpha": 0.35},
        {"weights": "sha256:bb"},
        {"image_size": 224},
        {"pooling": "flatten"},
    ],
)
def test_cache_key_changes_with_each_setting(change):
    assert cache_key(IMAGES, **{**BASE_KEY, **change}) != cache_key(IMAGES, **BASE_KEY)


AUGMENTATION = {"rotationRange": 20.0, "horizontalFlip": True, "seed": 1}


@pytest.mark.parametrize(
    "change",
    [
        {"feature_passes": 2},
        {"augmentation": {**AUGMENTATION, "rotationRange": 10.0}},
        {"augmentation": {**AUGMENTATION, "seed": 2}},
    ],
)
def test_cache_key_changes_with_the_augmented_passes(change):
    passes = {**BASE_KEY, "feature_passes": 4, "augmentation": AUGMENTATION}
    assert cache_key(IMAGES, **{**passes, **change}) != cache_key(IMAGES, **passes)
    assert cache_key(IMAGES, **passes) != cache_key(IMAGES, **BASE_KEY)


def test_without_passes_the_augmentation_is_not_part_of_the_key():
    unaugmented = {**BASE_KEY, "feature_passes": 0}
    assert cache_key(IMAGES, **unaugmented, augmentation=AUGMENTATION) == cache_key(
        IMAGES, **BASE_KEY
    )


def test_the_head_trains_on_the_images_then_each_augmented_pass():
    arrays = {
        "train_features": np.array([[1.0], [2.0]], np.float32),
        "train_labels": np.array([[0.0], [1.0]], np.float32),
        "train_augmented_features": np.array([[3.0], [4.0], [5.0], [6.0]], np.float32),
    }
    features, labels = head_training_rows(arrays)
    assert features[:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    assert labels[:, 0].tolist() == [0, 1, 0, 1, 0, 1]
    del arrays["train_augmented_features"]
    assert head_training_rows(arrays)[0][:, 0].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("row", "col", "value"),
    [(0, 0, "validation"), (0, 1, "dogs"), (0, 2, "cats/3.jpg"), (0, 3, 11), (1, 4, "e3")],
)
def test_cache_key_changes_with_the_images(row, col, value):
    changed = [list(r) for r in IMAGES]
    changed[row][col] = value
    assert cache_key(changed, **BASE_KEY) != cache_key(IMAGES, **BASE_KEY)


def test_weights_digest_is_the_file_content(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert backbones.weights_digest(str(a)) != backbones.weights_digest(str(b))
    assert backbones.weights_digest("imagenet").startswith("imagenet@keras-")


def test_a_bfloat16_model_keeps_float32_outputs_and_saves_loads_and_predicts(tmp_path):
    from ict_api.spec import Optimizer
    from ict_trainer.predict import load_model

    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[np.arange(8) % 3]
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build_scratch_model((32, 32, 3), 3, filters=[4], dense_units=8)
        models.compile_model(model, 3, optimizer=Optimizer.ADAM, learning_rate=1e-3)
        history = model.fit(images, labels, epochs=2, verbose=0)
        expected = model.predict(images, verbose=0)
        model.save(tmp_path / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"  # and so the loss
    assert np.isfinite(history.history["loss"]).all()
    loaded = load_model(tmp_path / "model.keras")  # in a float32 process, as `ict predict`
    assert loaded.get_layer("conv1").compute_dtype == "bfloat16"
    predicted = loaded.predict(images, verbose=0)
    assert predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, expected, atol=1e-6)
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-5)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = models.learning_rate_schedule(Schedule.COSINE, 1e-3, steps=100, warmup_steps=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert rates[0] == 0.0
    assert rates[1] == pytest.approx(5e-4)
    assert rates[2] == pytest.approx(1e-3)
    assert rates[2] > rates[3] > rates[4]
    assert rates[4] == pytest.approx(0.0, abs=1e-9)
    no_warmup = models.learning_rate_schedule(Schedule.COSINE, 1e-3, steps=10, warmup_steps=0)
    assert float(no_warmup(0)) == pytest.approx(1e-3)
    assert models.learning_rate_schedule(Schedule.CONSTANT, 1e-3, steps=100) == 1e-3
