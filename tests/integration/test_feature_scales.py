"""`ict train` with model.featureScales: the backbone sees each image at two sizes.

Real training on a few dozen shared cats-dogs images at 32 and 48 px for one epoch.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ict_trainer.cli import main
from tests.helpers import ARTIFACTS, MOBILENET, MOBILENET_V2, events, train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_cache")]


def test_bottleneck_at_two_sizes_caches_both_and_predicts_from_the_largest(
    cats_dogs, tmp_path, capsys, private_cache
):
    args = ["--data", str(cats_dogs), "--strategy", "bottleneck", "--backbone", "mobilenet_v2"]
    args += ["--weights", str(MOBILENET_V2), "--image-size", "32", "--epochs", "1"]
    args += ["--set", "model.alpha=0.35", "--set", "augmentation.featurePasses=1"]
    output = tmp_path / "out"
    code, lines, _ = train(
        capsys, *args, "--set", "model.featureScales=[48]", "--output", str(output)
    )
    assert code == 0
    assert events(lines, "start")[0]["imageSize"] == 48
    assert {p.name for p in output.iterdir()} >= ARTIFACTS
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["imageSize"] == 48
    (entry,) = (private_cache / "bottleneck").iterdir()
    # MobileNetV2-0.35 pools 1280 features per size: 32 px then 48 px.
    assert np.load(entry / "train_features.npy").shape == (24, 2 * 1280)
    assert np.load(entry / "train_augmented_features.npy").shape == (24, 2 * 1280)

    model = keras.saving.load_model(output / "model.keras")
    assert model.input_shape == (None, 48, 48, 3)
    image = next((cats_dogs / "validation" / "cats").iterdir())
    assert main(["predict", str(output / "model.keras"), str(image), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["class"] in ("cats", "dogs")
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    # The same run at one size is another cache entry, and another model input.
    one_size = ["--set", "model.featureScales=[]", "--output", str(tmp_path / "single")]
    code, lines, _ = train(capsys, *args, *one_size)
    assert code == 0
    assert events(lines, "features")[0]["cacheHit"] is False
    assert len(list((private_cache / "bottleneck").iterdir())) == 2
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert single["imageSize"] == 32


def test_finetune_at_two_sizes_unfreezes_the_shared_base_and_trains(cats_dogs, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"dataset: {{uri: {cats_dogs}}}\nstrategy: finetune\n"
        f"model: {{backbone: mobilenet, alpha: 0.25, weights: {MOBILENET}, imageSize: 32, "
        "featureScales: [48]}\n"
        "training: {epochs: 1, batchSize: 8}\naugmentation: {featurePasses: 0}\n"
        "fineTune: {epochs: 1}\n"
    )
    output = tmp_path / "out"
    code, lines, _ = train(capsys, "-f", str(spec), "--output", str(output))
    assert code == 0
    assert [(e["stage"], e["epoch"]) for e in events(lines, "epoch")] == [
        ("head", 1),
        ("finetune", 1),
    ]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["unfrozenLayers"] == ["conv_dw_13", "conv_pw_13"]
    assert metrics["imageSize"] == 48
    model = keras.saving.load_model(output / "model.keras")
    assert model.input_shape == (None, 48, 48, 3)
    # The one base serves both sizes: its weights are in the model once.
    extractor = model.get_layer("feature_extractor")
    (base,) = [layer for layer in extractor.layers if isinstance(layer, keras.Model)]
    assert len(extractor.weights) == len(base.weights)
    images = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    assert model.predict(images, verbose=0).shape == (2, 1)
