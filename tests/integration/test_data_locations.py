"""Where data, outputs and caches are: symlinked folders, a class named train, outputs and caches
inside the dataset (local and bucket), and the feature cache across precisions and on a hit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ict_trainer.data import load_dataset
from tests.conftest import S3Server
from tests.helpers import MOBILENET_V2, cats_dogs_subset, events, image_tree, train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_cache")]


def scratch(data: str, output: str, *more: str) -> list[str]:
    return [
        *("--data", data, "--strategy", "scratch", "--epochs", "1"),
        *("--image-size", "48", "--output", output, *more),
    ]


# -- 6. symlinks, 9. a class named train ---------------------------------------------------------


def test_symlinked_splits_and_class_folders_are_followed_and_loops_end(tmp_path):
    elsewhere = image_tree(tmp_path / "elsewhere", {"train/cats": 3, "validation/cats": 2})
    dogs = image_tree(tmp_path / "dogs-store", {"train": 4, "validation": 2})
    data = tmp_path / "data"
    data.mkdir()
    (data / "train").symlink_to(elsewhere / "train")
    (data / "validation").mkdir()
    (data / "validation" / "cats").symlink_to(elsewhere / "validation" / "cats")
    (data / "validation" / "dogs").symlink_to(dogs / "validation")
    (elsewhere / "train" / "dogs").symlink_to(dogs / "train")
    (dogs / "train" / "loop").symlink_to(dogs / "train")  # a loop must not hang the scan

    dataset = load_dataset(data, None, seed=1)
    assert dataset.layout == "folders"
    assert dataset.counts() == {
        "train": {"cats": 3, "dogs": 4},
        "validation": {"cats": 2, "dogs": 2},
    }


def test_a_class_named_train_is_a_class(tmp_path):
    data = image_tree(tmp_path / "data", {"car": 5, "train": 5})
    dataset = load_dataset(data, None, seed=1)
    assert dataset.layout == "split" and dataset.class_names == ["car", "train"]

    split = image_tree(tmp_path / "split", {"train/a": 2, "train/b": 2, "val/a": 1, "val/b": 1})
    assert load_dataset(split, None, seed=1).counts()["validation"] == {"a": 1, "b": 1}


# -- 5. outputs and caches inside the dataset ----------------------------------------------------


def test_an_output_inside_the_dataset_or_holding_it_is_refused(tmp_path, capsys):
    data = image_tree(tmp_path / "data", {"cats": 4, "dogs": 4})
    code, lines, err = train(capsys, *scratch(str(data), str(data / "runs" / "1")))
    assert code == 2 and "inside dataset.uri" in err and not events(lines, "epoch")
    assert not (data / "runs").exists()
    code, _, err = train(capsys, *scratch(str(data), str(tmp_path)))
    assert code == 2 and "is inside output.uri" in err
    # The default cache of a local run is $ICT_CACHE_DIR; one set inside the dataset is refused
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"cache: {{uri: {data / 'cache'}}}\nmodel: {{weights: none}}\n")
    args = ["-f", str(spec), *scratch(str(data), str(tmp_path / "out"))]
    code, _, err = train(capsys, *[a if a != "scratch" else "bottleneck" for a in args])
    assert code == 2 and "cache.uri" in err


@pytest.mark.s3
def test_a_bucket_dataset_ignores_dot_names_and_refuses_an_output_inside_it(
    moto_s3: S3Server, aws_env, make_bucket, tmp_path, capsys
):
    aws_env(moto_s3.endpoint, moto_s3.credentials)
    bucket, elsewhere = make_bucket(moto_s3), make_bucket(moto_s3)
    client = moto_s3.client()
    local = image_tree(tmp_path / "data", {"cats": 4, "dogs": 4})
    for path in sorted(local.rglob("*.jpg")):
        client.upload_file(str(path), bucket, path.relative_to(local).as_posix())
    client.put_object(Bucket=bucket, Key=".ict-cache/bottleneck/k/manifest.json", Body=b"{}")

    code, _, err = train(capsys, *scratch(f"s3://{bucket}", f"s3://{bucket}/runs/1"))
    assert code == 2 and "inside dataset.uri" in err

    code, lines, err = train(capsys, *scratch(f"s3://{bucket}", f"s3://{elsewhere}/run"))
    assert code == 0, err
    assert events(lines, "dataset")[0]["classes"] == ["cats", "dogs"]


# -- 1. the feature cache across precisions, 11. what a hit counts --------------------------------


def bottleneck(data: str, output: str, spec: Path) -> list[str]:
    return [
        *("-f", str(spec), "--data", data, "--strategy", "bottleneck"),
        *("--backbone", "mobilenet_v2", "--weights", str(MOBILENET_V2)),
        *("--image-size", "48", "--epochs", "1", "--output", output),
    ]


def test_mixed_precision_features_are_read_back_by_a_float32_run(tmp_path, capsys):
    data = cats_dogs_subset(tmp_path / "data", train=8, validation=4)
    runs = {}
    for precision in ("on", "off"):
        spec = tmp_path / f"{precision}.yaml"
        spec.write_text(f"model: {{alpha: 0.35}}\ntraining: {{mixedPrecision: '{precision}'}}\n")
        code, lines, err = train(capsys, *bottleneck(str(data), str(tmp_path / precision), spec))
        assert code == 0, err
        runs[precision] = events(lines, "features")[0]
    assert runs["on"]["cacheHit"] is False
    assert runs["off"]["cacheHit"] is True and runs["off"]["key"] == runs["on"]["key"]


@pytest.mark.s3
def test_a_cache_hit_counts_only_the_files_the_filling_run_could_use(
    moto_s3: S3Server, aws_env, make_bucket, tmp_path, capsys, monkeypatch
):
    aws_env(moto_s3.endpoint, moto_s3.credentials)
    bucket = make_bucket(moto_s3)
    local = cats_dogs_subset(tmp_path / "data", train=6, validation=3)
    truncated = local / "train" / "cats" / "truncated.jpg"
    truncated.write_bytes(next((local / "train" / "dogs").iterdir()).read_bytes()[:600])
    client = moto_s3.client()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"data/{path.relative_to(local).as_posix()}")
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: {alpha: 0.35}\n")

    found = []
    for run in ("a", "b"):
        monkeypatch.setenv("ICT_CACHE_DIR", str(tmp_path / f"cache-{run}"))  # a fresh pod
        out = f"s3://{bucket}/runs/{run}"
        code, lines, err = train(capsys, *bottleneck(f"s3://{bucket}/data", out, spec))
        assert code == 0, err
        metrics = json.loads(
            client.get_object(Bucket=bucket, Key=f"runs/{run}/metrics.json")["Body"].read()
        )
        found.append((events(lines, "features")[0]["cacheHit"], metrics))
    (miss, first), (hit, second) = found
    assert (miss, hit) == (False, True)
    assert (
        second["counts"]
        == first["counts"]
        == {
            "train": {"cats": 6, "dogs": 6},
            "validation": {"cats": 3, "dogs": 3},
        }
    )
    assert [os.path.basename(s["path"]) for s in second["skippedFiles"]] == ["truncated.jpg"]
    assert second["skippedFiles"][0]["reason"] == first["skippedFiles"][0]["reason"]
