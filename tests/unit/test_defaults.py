"""Per-strategy defaults: one table, one function; explicit values win; descriptions agree."""

import pytest

from ict_api import SpecError, load_document, parse_assignments, resolve_defaults
from ict_api.spec import ImageClassifierTrainingSpec, Pooling, Strategy
from ict_trainer.artifacts import spec_digest

# What an unset field becomes, per strategy: the wide convnet and a long cosine schedule for
# scratch, the bottleneck head's settings for the others.
HEAD = {
    "imageSize": 224,
    "filters": None,
    "pooling": "avg",
    "denseUnits": 256,
    "dropout": 0.5,
    "rescale": None,
    "earlyStopping": True,
    "epochs": 50,
    "optimizer": "rmsprop",
    "weightDecay": 0.0,
    "schedule": "constant",
}
EXPECTED = {
    "scratch": {
        "imageSize": 150,
        "filters": [32, 64, 128, 128],
        "pooling": "flatten",
        "denseUnits": 128,
        "dropout": 0.5,
        "rescale": 1 / 255,
        "earlyStopping": False,
        "epochs": 100,
        "optimizer": "adamw",
        "weightDecay": 0.05,
        "schedule": "cosine",
    },
    "bottleneck": HEAD,
    "finetune": HEAD,
}


def resolved(strategy: str, **sections) -> ImageClassifierTrainingSpec:
    spec = {"dataset": {"uri": "d"}, "strategy": strategy, **sections}
    return resolve_defaults(ImageClassifierTrainingSpec.model_validate(spec))


def summary(spec: ImageClassifierTrainingSpec) -> dict:
    return {
        "imageSize": spec.model.image_size,
        "filters": spec.model.scratch_filters,
        "pooling": spec.model.pooling.value,
        "denseUnits": spec.model.dense_units,
        "dropout": spec.model.dropout,
        "rescale": spec.augmentation.rescale,
        "earlyStopping": spec.training.early_stopping.enabled,
        "epochs": spec.training.epochs,
        "optimizer": spec.training.optimizer.value,
        "weightDecay": spec.training.weight_decay,
        "schedule": spec.training.schedule.value,
    }


def test_the_blog_architecture_gives_the_blogs_convnet_and_explicit_fields_still_win():
    blog = resolved("scratch", model={"architecture": "blog"})
    assert (blog.model.scratch_filters, blog.model.dense_units, blog.model.batch_norm) == (
        [32, 32, 64],
        64,
        False,
    )
    assert resolved("scratch").model.batch_norm is True
    mixed = resolved("scratch", model={"architecture": "blog", "denseUnits": 16})
    assert (mixed.model.scratch_filters, mixed.model.dense_units) == ([32, 32, 64], 16)
    # The architecture shapes scratch only: a backbone's head keeps its own defaults.
    head = resolved("bottleneck", model={"architecture": "blog"})
    assert (head.model.scratch_filters, head.model.dense_units) == (None, 256)


@pytest.mark.parametrize("strategy", list(EXPECTED))
def test_unset_fields_take_their_strategy_default(strategy):
    assert summary(resolved(strategy)) == EXPECTED[strategy]


def test_unset_fields_stay_none_until_resolved():
    spec = ImageClassifierTrainingSpec.model_validate({"dataset": {"uri": "d"}})
    assert (spec.model.pooling, spec.model.dense_units, spec.training.early_stopping) == (
        None,
        None,
        None,
    )


def test_explicit_values_always_win():
    spec = resolved(
        "scratch",
        model={"pooling": "avg", "denseUnits": 256, "imageSize": 96},
        training={"earlyStopping": {"patience": 3}},
    )
    assert spec.model.pooling is Pooling.AVG
    assert (spec.model.dense_units, spec.model.image_size) == (256, 96)
    # An earlyStopping block given for scratch turns it on, with the fields it does not set.
    assert spec.training.early_stopping.enabled is True
    assert spec.training.early_stopping.patience == 3
    off = resolved("finetune", training={"earlyStopping": {"enabled": False}})
    assert off.training.early_stopping.enabled is False


def test_resolving_is_idempotent_and_keeps_the_strategy():
    once = resolved("bottleneck")
    assert resolve_defaults(once) == once
    assert once.strategy is Strategy.BOTTLENECK


def test_digest_sees_the_resolved_spec():
    unset = resolved("scratch")
    written = resolved("scratch", model={"pooling": "flatten", "denseUnits": 128})
    other = resolved("scratch", model={"pooling": "avg"})
    assert spec_digest(unset) == spec_digest(written) != spec_digest(other)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        (("model", "pooling"), 'model.architecture\'s for scratch; "avg" for bottleneck and'),
        (("model", "dense_units"), "model.architecture's for scratch; 256 for bottleneck and"),
        (("training", "schedule"), '"cosine" for scratch; "constant" for bottleneck and'),
        (("training", "epochs"), "100 for scratch; 50 for bottleneck and finetune"),
        (("model", "image_size"), "150 for scratch; 224 for bottleneck and finetune"),
        (("training", "early_stopping"), "off for scratch; on ("),
        (("augmentation", "rescale"), "1/255 for scratch; none (the backbone's own"),
    ],
)
def test_descriptions_say_what_unset_means_per_strategy(path, words):
    section, field = path
    model = ImageClassifierTrainingSpec.model_fields[section].annotation
    model = next(t for t in (model, *getattr(model, "__args__", ())) if hasattr(t, "model_fields"))
    assert words in model.model_fields[field].description


def test_set_types_values_by_the_spec():
    assert parse_assignments(
        [
            "model.alpha=0.35",
            "training.earlyStopping.patience=5",
            "training.earlyStopping.restoreBestWeights=false",
            "training.mixedPrecision=off",  # an enum: text, not YAML's false
            "model.scratchFilters=[16, 32]",
            "fineTune.layers=block5_,block4_conv3",
            "model.scratchFilters=8,16",
            "dataset.uri=123",  # a string field keeps the text
        ]
    ) == {
        "model.alpha": 0.35,
        "training.earlyStopping.patience": 5,
        "training.earlyStopping.restoreBestWeights": False,
        "training.mixedPrecision": "off",
        "model.scratchFilters": [8, 16],
        "fineTune.layers": ["block5_", "block4_conv3"],
        "dataset.uri": "123",
    }


def test_set_applies_after_flags_and_validates_like_the_file():
    _, spec = load_document(
        {"dataset": {"uri": "d"}, "model": {"alpha": 1.0}},
        {"strategy": "bottleneck", "model.backbone": "mobilenet_v2"},
        ["model.alpha=0.35", "training.earlyStopping.patience=5", "augmentation.enabled=no"],
    )
    assert spec.model.alpha == 0.35
    assert spec.training.early_stopping.patience == 5
    assert spec.augmentation.enabled is False


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("model.alpah=0.35", "spec.model.alpah: unknown field; allowed fields here: alpha,"),
        ("model.alpha=wide", "spec.model.alpha: got 'wide'; input should be a valid number"),
        ("training.epochs=1.5", "spec.training.epochs: got 1.5;"),
        ("model.scratchFilters=[8, x]", "spec.model.scratchFilters.1: got 'x'"),
        ("training.earlyStopping.enabled=maybe", "spec.training.earlyStopping.enabled: got"),
        ("model.alpha", "expected PATH=VALUE"),
        ("model..alpha=1", "expected PATH=VALUE"),
    ],
)
def test_bad_set_is_refused_with_the_field_path(assignment, message):
    with pytest.raises(SpecError) as error:
        load_document({"dataset": {"uri": "d"}}, None, [assignment])
    assert message in str(error.value)


def test_bare_spec_runs_are_named_after_their_output(tmp_path):
    name, _ = load_document({"dataset": {"uri": "d"}, "output": {"uri": str(tmp_path / "cats")}})
    assert name == "cats"
    assert load_document({"dataset": {"uri": "d"}, "output": {"uri": "s3://b/runs/r7/"}})[0] == "r7"
