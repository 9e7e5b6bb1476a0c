"""The spec: defaults, round trip, overrides, and every validation rule with its message."""

import pytest
import yaml

from ict_api import SpecError, load_document, load_file
from ict_api.spec import Backbone, ImageClassifierTrainingSpec, Strategy

MANIFEST = {
    "apiVersion": "littledata.dev/v1alpha1",
    "kind": "ImageClassifierTraining",
    "metadata": {"name": "cats-dogs"},
    "spec": {"strategy": "bottleneck", "dataset": {"uri": "s3://data/cats-dogs"}},
}


def test_defaults_follow_the_blog_with_documented_improvements():
    spec = ImageClassifierTrainingSpec.model_validate({"dataset": {"uri": "data"}})
    assert spec.strategy is Strategy.FINETUNE
    assert spec.model.backbone is Backbone.VGG16
    assert spec.fine_tune.optimizer.value == "sgd"
    assert spec.fine_tune.learning_rate == 1e-4
    assert spec.augmentation.horizontal_flip is True
    assert spec.output.overwrite is False


def test_wire_format_is_camel_case_and_round_trips():
    spec = ImageClassifierTrainingSpec.model_validate(
        {
            "dataset": {"uri": "d", "validationSplit": 0.25},
            "fineTune": {"blocks": 2},
            "model": {"imageSize": 160},
        }
    )
    wire = spec.model_dump(mode="json", by_alias=True)
    assert wire["dataset"]["validationSplit"] == 0.25
    assert wire["fineTune"]["blocks"] == 2
    assert "fine_tune" not in wire
    assert ImageClassifierTrainingSpec.model_validate(wire) == spec


def test_every_field_is_described():
    def walk(model, path):
        for name, field in model.model_fields.items():
            assert field.description, f"{path}.{name} has no description"
            annotation = field.annotation
            for candidate in (annotation, *getattr(annotation, "__args__", ())):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    walk(candidate, f"{path}.{name}")

    walk(ImageClassifierTrainingSpec, "spec")


def test_manifest_and_bare_spec_are_both_accepted(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    name, spec = load_file(manifest)
    assert (name, spec.strategy) == ("cats-dogs", Strategy.BOTTLENECK)
    bare = tmp_path / "s.yaml"
    bare.write_text(yaml.safe_dump(MANIFEST["spec"]))
    assert load_file(bare)[1] == spec


def test_overrides_replace_file_values():
    _, spec = load_document(
        MANIFEST,
        {"strategy": "scratch", "training.epochs": 3, "model.imageSize": 64, "dataset.uri": "here"},
    )
    assert spec.strategy is Strategy.SCRATCH
    assert (spec.training.epochs, spec.model.image_size, spec.dataset.uri) == (3, 64, "here")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, "spec.dataset: required field is missing"),
        (
            {"dataset": {"uri": "d"}, "strategy": "transfer"},
            "spec.strategy: got 'transfer'; allowed values: 'scratch', 'bottleneck' or 'finetune'",
        ),
        (
            {"dataset": {"uri": "d"}, "model": {"backbone": "vgg19"}},
            "spec.model.backbone: got 'vgg19'; allowed values: 'vgg16'",
        ),
        (
            {"dataset": {"uri": "d"}, "training": {"epochs": 0}},
            "spec.training.epochs: got 0; input should be greater than or equal to 1",
        ),
        (
            {"dataset": {"uri": "d"}, "training": {"epoch": 5}},
            "spec.training.epoch: unknown field; allowed fields here: batchSize, earlyStopping",
        ),
        (
            {"dataset": {"uri": "d", "validationSplit": 1.5}},
            "spec.dataset.validationSplit: got 1.5; input should be less than 1",
        ),
        (
            {"dataset": {"uri": "d"}, "augmentation": {"fillMode": "mirror"}},
            "spec.augmentation.fillMode: got 'mirror'; allowed values: 'nearest', 'reflect'",
        ),
        (
            {"dataset": {"uri": "d"}, "augmentation": {"rotationRange": 270}},
            "spec.augmentation.rotationRange: got 270; input should be less than or equal to 180",
        ),
        (
            {"dataset": {"uri": "d"}, "resources": {"memory": "lots"}},
            "spec.resources.memory: got 'lots'; string should match pattern",
        ),
        (
            {"dataset": {"uri": "d"}, "strategy": "finetune", "augmentation": {"rescale": 0.5}},
            "augmentation.rescale=0.5 applies to the scratch strategy only",
        ),
        (
            {"dataset": {"uri": "d"}, "fineTune": {"blocks": 0}},
            "spec.fineTune.blocks: got 0; input should be greater than or equal to 1",
        ),
    ],
)
def test_invalid_specs_name_the_field_and_what_is_allowed(spec, expected):
    with pytest.raises(SpecError) as error:
        load_document(spec)
    assert expected in str(error.value)


def test_manifest_with_wrong_kind_is_refused():
    with pytest.raises(SpecError, match="kind: got 'Training'"):
        load_document({**MANIFEST, "kind": "Training"})


def test_unreadable_and_non_mapping_files_are_reported(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_file(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="holds a list, not a mapping"):
        load_file(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_file(broken)


def test_example_manifests_are_valid():
    from pathlib import Path

    examples = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
    assert examples
    for example in examples:
        if "kind: Secret" not in example.read_text():  # s3-credentials.yaml
            load_file(example)


def test_a_manifest_from_the_environment_as_trainer_pods_get_it(monkeypatch):
    import json

    from ict_api import load_env

    monkeypatch.setenv("ICT_SPEC", json.dumps(MANIFEST))
    name, spec = load_env("ICT_SPEC", {"training.epochs": 2})
    assert name == "cats-dogs"
    assert spec.strategy is Strategy.BOTTLENECK
    assert spec.training.epochs == 2
    monkeypatch.setenv("ICT_SPEC", "")
    with pytest.raises(SpecError, match="'ICT_SPEC' is unset or empty"):
        load_env("ICT_SPEC")
    monkeypatch.setenv("ICT_SPEC", "[1, 2")
    with pytest.raises(SpecError, match="not valid JSON or YAML"):
        load_env("ICT_SPEC")
