"""`ict train` with the dataset, weights, output, feature cache and checkpoints in a bucket.

moto serves the fast cases; SeaweedFS (real SigV4) the ones about credentials and permissions,
and the kill-and-resume runs, which go through `python -m ict_trainer.cli` as a pod would.
Trainings are tiny: a few dozen shared cats-dogs images at 32-64 px for one to four epochs.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from ict_trainer.cli import main
from tests.conftest import S3Credentials, S3Server
from tests.helpers import ARTIFACTS, CATS_DOGS, MOBILENET_V2, cats_dogs_subset, events, train

pytestmark = [pytest.mark.s3, pytest.mark.slow, pytest.mark.usefixtures("private_cache")]

DATA = "datasets/cats-dogs"
WEIGHTS = f"weights/{MOBILENET_V2.name}"
GALLERY_LIMIT = 24  # evaluation.worst_predictions' default: the report shows at most these


# -- helpers ------------------------------------------------------------------------------------


def upload_tree(client, bucket: str, prefix: str, root: Path) -> int:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")
    return len(files)


def keys_below(server: S3Server, bucket: str, prefix: str) -> set[str]:
    """Keys under prefix/, relative to it (paginated)."""
    pages = (
        server.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=f"{prefix}/")
    )
    return {item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", ())}


def get_object(server: S3Server, bucket: str, key: str) -> bytes:
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def local_files(folder: Path) -> set[str]:
    """Files below folder (the sync index aside), relative to it."""
    if not folder.is_dir():
        return set()
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".ict-sync.json"
    }


def bottleneck_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text("model:\n  alpha: 0.35\ntraining:\n  optimizer: adam\n  batchSize: 8\n")
    return spec


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def termination(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("ICT_TERMINATION_MESSAGE_PATH", str(path))
    return path


@pytest.fixture
def moto_bucket(moto_s3: S3Server, aws_env, make_bucket, cats_dogs) -> str:
    """A moto bucket holding the small dataset under DATA and the MobileNetV2 weights; the
    trainer reaches it through AWS_ENDPOINT_URL and the key pair in the environment."""
    aws_env(moto_s3.endpoint, moto_s3.credentials)
    bucket = make_bucket(moto_s3)
    client = moto_s3.client()
    assert upload_tree(client, bucket, DATA, cats_dogs) == 36
    client.upload_file(str(MOBILENET_V2), bucket, WEIGHTS)
    return bucket


@pytest.fixture
def weed_bucket(seaweedfs: S3Server, aws_env, make_bucket, cats_dogs) -> str:
    """The same on SeaweedFS, uploaded by its admin; the environment is left for the test."""
    bucket = make_bucket(seaweedfs)
    client = seaweedfs.client()
    assert upload_tree(client, bucket, DATA, cats_dogs) == 36
    client.upload_file(str(MOBILENET_V2), bucket, WEIGHTS)
    return bucket


# -- 1. mirroring the dataset -------------------------------------------------------------------


def test_dataset_is_downloaded_once_then_only_what_changed(
    moto_s3: S3Server, moto_bucket: str, private_cache: Path, capsys
):
    data = f"s3://{moto_bucket}/{DATA}"
    args = ["--data", data, "--strategy", "scratch", "--epochs", "1", "--image-size", "48"]

    code, first, err = train(capsys, *args, "--output", f"s3://{moto_bucket}/runs/1")
    assert code == 0, err
    (download,) = events(first, "download")
    assert (download["downloaded"], download["skipped"]) == (36, 0)
    assert download["uri"] == data and download["bytes"] > 0
    (mirror,) = (private_cache / "datasets").iterdir()
    assert len(local_files(mirror)) == 36
    assert {f for f in local_files(mirror) if f.startswith("validation/dogs/")} == {
        f"validation/dogs/{p.name}" for p in sorted((CATS_DOGS / "validation/dogs").iterdir())[:6]
    }

    code, second, err = train(capsys, *args, "--output", f"s3://{moto_bucket}/runs/2")
    assert code == 0, err
    (download,) = events(second, "download")
    assert (download["downloaded"], download["skipped"], download["bytes"]) == (0, 36, 0)

    # The same key, other content (another cat): only that object is fetched again.
    changed = sorted(local_files(mirror / "train" / "cats"))[0]
    replacement = sorted((CATS_DOGS / "train" / "cats").iterdir())[500].read_bytes()
    assert replacement != (mirror / "train" / "cats" / changed).read_bytes()
    moto_s3.client().put_object(
        Bucket=moto_bucket, Key=f"{DATA}/train/cats/{changed}", Body=replacement
    )
    code, third, err = train(capsys, *args, "--output", f"s3://{moto_bucket}/runs/3")
    assert code == 0, err
    (download,) = events(third, "download")
    assert (download["downloaded"], download["skipped"]) == (1, 35)
    assert download["bytes"] == len(replacement)
    assert (mirror / "train" / "cats" / changed).read_bytes() == replacement
    assert list((private_cache / "datasets").iterdir()) == [mirror]


# -- 2. bottleneck features in the bucket -------------------------------------------------------


def test_cached_features_in_the_bucket_spare_the_image_download(
    moto_s3: S3Server, moto_bucket: str, tmp_path: Path, monkeypatch, capsys
):
    args = [
        "-f",
        str(bottleneck_spec(tmp_path)),
        "--data",
        f"s3://{moto_bucket}/{DATA}",
        "--strategy",
        "bottleneck",
        "--backbone",
        "mobilenet_v2",
        "--weights",
        f"s3://{moto_bucket}/{WEIGHTS}",
        "--image-size",
        "64",
        "--epochs",
        "2",
    ]
    code, first, err = train(capsys, *args, "--output", f"s3://{moto_bucket}/runs/a")
    assert code == 0, err
    (features,) = events(first, "features")
    assert features["cacheHit"] is False
    (download,) = events(first, "download")
    assert download["downloaded"] == 36
    # The default cache is .ict-cache/ in the output's bucket; the manifest is written last.
    key = features["key"]
    assert features["uri"] == f"s3://{moto_bucket}/.ict-cache/bottleneck/{key}"
    entry = keys_below(moto_s3, moto_bucket, f".ict-cache/bottleneck/{key}")
    assert "manifest.json" in entry and "train_features.npy" in entry
    assert keys_below(moto_s3, moto_bucket, ".ict-cache/bottleneck") == {
        f"{key}/{name}" for name in entry
    }

    # A new pod: nothing local, not even the weights; the bucket still holds the features.
    fresh = tmp_path / "fresh-cache"
    monkeypatch.setenv("ICT_CACHE_DIR", str(fresh))
    code, second, err = train(capsys, *args, "--output", f"s3://{moto_bucket}/runs/b")
    assert code == 0, err
    (features,) = events(second, "features")
    assert features["cacheHit"] is True and features["key"] == key
    assert events(second, "download") == [], "a cache hit must not sync the dataset"
    assert [e["epoch"] for e in events(second, "epoch")] == [1, 2]
    (summary,) = events(second, "summary")
    assert summary["cacheHit"] is True

    metrics = json.loads(get_object(moto_s3, moto_bucket, "runs/b/metrics.json"))
    assert metrics["cacheHit"] is True
    assert "features" not in metrics["durations"]
    assert metrics["counts"]["validation"] == {"cats": 6, "dogs": 6}
    # Only the report's gallery (misclassified validation images) was fetched, one by one.
    mirrors = {f.split("/", 1)[0] for f in local_files(fresh / "datasets")}
    assert len(mirrors) <= 1
    fetched = {f.split("/", 1)[1] for f in local_files(fresh / "datasets")}
    gallery = {f"validation/{item['trueClass']}/{item['file']}" for item in metrics["worst"]}
    assert fetched == gallery
    assert len(fetched) <= min(GALLERY_LIMIT, 12)
    assert not any("/train/" in f for f in fetched)


# -- 3. artifacts and the termination message ---------------------------------------------------


def test_artifacts_and_termination_message(
    moto_s3: S3Server, moto_bucket: str, termination: Path, capsys
):
    output = f"s3://{moto_bucket}/results/scratch"
    code, lines, err = train(
        capsys,
        "--data",
        f"s3://{moto_bucket}/{DATA}",
        "--strategy",
        "scratch",
        "--epochs",
        "2",
        "--image-size",
        "48",
        "--output",
        output,
    )
    assert code == 0, err
    assert keys_below(moto_s3, moto_bucket, "results/scratch") == ARTIFACTS
    metrics = json.loads(get_object(moto_s3, moto_bucket, "results/scratch/metrics.json"))
    assert metrics["classNames"] == ["cats", "dogs"]
    assert metrics["counts"]["train"] == {"cats": 12, "dogs": 12}
    assert len(metrics["history"]["loss"]) == 2 and metrics["resumed"] == {}
    assert metrics["spec"]["output"]["uri"] == output
    (summary,) = events(lines, "summary")
    assert summary["artifacts"] == {name: f"{output}/{name}" for name in ARTIFACTS}

    raw = termination.read_bytes()
    assert len(raw) < 4096
    message = json.loads(raw)
    assert message["status"] == "succeeded"
    assert message["artifacts"]["model.keras"] == f"{output}/model.keras"
    assert message["final"] == metrics["final"]


def test_a_rerun_over_an_up_to_date_bucket_output_writes_nothing(
    moto_s3: S3Server, moto_bucket: str, capsys
):
    output = f"s3://{moto_bucket}/results/again"
    args = ["--data", f"s3://{moto_bucket}/{DATA}", "--strategy", "scratch", "--epochs", "1"]
    args += ["--image-size", "48", "--output", output]
    code, lines, err = train(capsys, *args)
    assert code == 0, err
    (publish,) = events(lines, "publish")
    assert (publish["uploaded"], publish["skipped"]) == (len(ARTIFACTS) - 1, 0)

    def objects() -> dict[str, tuple]:
        pages = moto_s3.client().get_paginator("list_objects_v2").paginate(Bucket=moto_bucket)
        return {
            item["Key"]: (item["ETag"], item["LastModified"])
            for page in pages
            for item in page.get("Contents", ())
        }

    before = objects()
    code, lines, err = train(capsys, *args)
    assert code == 0, err
    assert not events(lines, "epoch") and not events(lines, "publish")
    (summary,) = events(lines, "summary")
    assert summary["upToDate"] is True
    metrics = json.loads(get_object(moto_s3, moto_bucket, "results/again/metrics.json"))
    assert (summary["final"], summary["accuracy"]) == (
        metrics["final"],
        metrics["evaluation"]["accuracy"],
    )
    assert objects() == before


# -- 4. kill and resume -------------------------------------------------------------------------


class Training:
    """`python -m ict_trainer.cli train` in a subprocess; its stdout read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path):
        self.stderr_path = stderr
        with open(stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ict_trainer.cli", "train", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        self.lines: list[dict] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def _take(self, timeout: float) -> dict | None:
        line = self._queue.get(timeout=timeout)
        if line is None:
            return None
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON progress line on stdout: {line!r}")
        self.lines.append(event)
        return event

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, kind: str, epoch: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._take(max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"no {kind} {epoch} line within {timeout} s:\n{self.stderr()[-3000:]}")
            if event is None:
                pytest.fail(
                    f"the trainer exited ({self.proc.wait()}) before its {kind} {epoch} line:\n"
                    f"{self.stderr()[-3000:]}"
                )
            if event["event"] == kind and event.get("epoch") == epoch:
                return event

    def finish(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the trainer did not exit within {timeout} s:\n{self.stderr()[-3000:]}")
        while self._take(timeout=30) is not None:
            pass
        return code


@pytest.fixture(scope="module")
def kill_data(seaweedfs: S3Server, tmp_path_factory) -> str:
    """A larger subset (an epoch lasts about a second here) in its own SeaweedFS bucket."""
    bucket = f"ict-kill-{uuid.uuid4().hex[:12]}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=bucket)
    root = cats_dogs_subset(tmp_path_factory.mktemp("cats-dogs-kill"), train=100, validation=16)
    upload_tree(client, bucket, DATA, root)
    return bucket


@pytest.mark.parametrize(
    ("sig", "after_epoch", "exit_code"),
    [(signal.SIGTERM, 1, 143), (signal.SIGKILL, 2, -signal.SIGKILL)],
    ids=["sigterm", "sigkill"],
)
def test_killed_training_resumes_from_its_last_epoch(
    seaweedfs: S3Server, kill_data: str, aws_env, tmp_path: Path, sig, after_epoch, exit_code
):
    aws_env(seaweedfs.endpoint, seaweedfs.credentials)
    termination = tmp_path / "termination-log"
    env = {
        **os.environ,
        "ICT_TERMINATION_MESSAGE_PATH": str(termination),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    prefix = f"runs/{sig.name.lower()}"
    output = f"s3://{kill_data}/{prefix}"
    args = [
        "--data",
        f"s3://{kill_data}/{DATA}",
        "--strategy",
        "scratch",
        "--epochs",
        "4",
        # Large enough that an epoch lasts well over the moment the signal takes to arrive.
        "--image-size",
        "128",
        "--output",
        output,
    ]

    first = Training(args, env, tmp_path / "first.stderr")
    first.wait_for("epoch", after_epoch)
    killed_at = time.monotonic()
    first.proc.send_signal(sig)
    assert first.finish(timeout=60) == exit_code, first.stderr()[-3000:]
    assert time.monotonic() - killed_at < 10, "the trainer must stop within seconds"
    printed = [e for e in first.lines if e["event"] == "epoch"]
    assert [e["epoch"] for e in printed] == list(range(1, after_epoch + 1))
    checkpoints = keys_below(seaweedfs, kill_data, f"{prefix}/checkpoints")
    assert "state.json" in checkpoints
    state = json.loads(get_object(seaweedfs, kill_data, f"{prefix}/checkpoints/state.json"))
    assert state["stages"]["train"]["epoch"] == after_epoch
    assert state["stages"]["train"]["complete"] is False
    assert state["stages"]["train"]["weights"].removeprefix("checkpoints/") in checkpoints
    assert "metrics.json" not in keys_below(seaweedfs, kill_data, prefix)
    if sig is signal.SIGTERM:
        assert "SIGTERM" in first.stderr()
        assert [e["event"] for e in first.lines[-1:]] == ["terminated"]
        assert json.loads(termination.read_text())["status"] == "terminated"

    second = Training(args, env, tmp_path / "second.stderr")
    assert second.finish(timeout=300) == 0, second.stderr()[-3000:]
    (resume,) = [e for e in second.lines if e["event"] == "resume"]
    assert (resume["stage"], resume["epoch"], resume["complete"]) == ("train", after_epoch, False)
    (download,) = [e for e in second.lines if e["event"] == "download"]
    assert download["downloaded"] == 0, "the same data cache: nothing to fetch again"
    epochs = [e["epoch"] for e in second.lines if e["event"] == "epoch"]
    assert epochs == list(range(after_epoch + 1, 5))

    metrics = json.loads(get_object(seaweedfs, kill_data, f"{prefix}/metrics.json"))
    assert metrics["resumed"] == {"train": after_epoch}
    history = metrics["history"]
    assert {len(values) for values in history.values()} == {4}
    for event in printed:
        for name, value in event["metrics"].items():
            assert history[name][event["epoch"] - 1] == pytest.approx(value, abs=1e-6), name
    assert keys_below(seaweedfs, kill_data, f"{prefix}/checkpoints") == set()
    assert keys_below(seaweedfs, kill_data, prefix) == ARTIFACTS
    assert json.loads(termination.read_text())["status"] == "succeeded"
    for text in (first.stderr(), second.stderr(), json.dumps(first.lines + second.lines)):
        assert seaweedfs.secret_key not in text


# -- 5. failures --------------------------------------------------------------------------------


def refused(capsys, termination: Path, *args: str) -> tuple[str, list[dict]]:
    """Runs a training that must be refused; returns its one error message and its lines."""
    code, lines, err = train(capsys, *args)
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    (error,) = events(lines, "error")
    assert error["message"] in err
    message = json.loads(termination.read_text())
    assert message["status"] == "failed" and message["message"] == error["message"][:3000]
    return error["message"], lines


@pytest.mark.parametrize("where", ["dataset", "output"])
def test_missing_bucket(moto_bucket: str, termination: Path, tmp_path: Path, capsys, where):
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    data = f"s3://{missing}/ds" if where == "dataset" else f"s3://{moto_bucket}/{DATA}"
    output = f"s3://{missing}/out" if where == "output" else str(tmp_path / "out")
    message, _ = refused(
        capsys,
        termination,
        *("--data", data, "--strategy", "scratch", "--epochs", "1", "--image-size", "48"),
        *("--output", output),
    )
    assert f"S3 bucket {missing!r} does not exist" in message
    assert (data if where == "dataset" else output) in message
    assert "create the bucket or correct the URI" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["missing", "folder-marker-only"])
def test_empty_dataset_prefix(
    moto_s3: S3Server, moto_bucket: str, termination: Path, tmp_path: Path, capsys, layout
):
    if layout == "folder-marker-only":  # what a console's "create folder" leaves
        moto_s3.client().put_object(Bucket=moto_bucket, Key="empty/", Body=b"")
    data = f"s3://{moto_bucket}/empty"
    message, _ = refused(
        capsys,
        termination,
        *("--data", data, "--strategy", "scratch", "--output", str(tmp_path / "out")),
    )
    assert f"dataset {data!r} holds no objects" in message
    assert "Upload the class folders there" in message and "dataset.uri" in message


@pytest.mark.parametrize("wrong", ["secret", "key-id"])
def test_wrong_credentials(
    seaweedfs: S3Server, weed_bucket: str, aws_env, termination, tmp_path, capsys, wrong
):
    if wrong == "secret":
        creds = S3Credentials(seaweedfs.access_key, f"wrong-secret-{uuid.uuid4().hex}")
        code, variable = "SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"
    else:
        creds = S3Credentials(f"unknown{uuid.uuid4().hex[:8]}", seaweedfs.secret_key)
        code, variable = "InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"
    aws_env(seaweedfs.endpoint, creds)
    data = f"s3://{weed_bucket}/{DATA}"
    message, _ = refused(
        capsys,
        termination,
        *("--data", data, "--strategy", "scratch", "--output", str(tmp_path / "out")),
    )
    assert code in message and data in message and variable in message
    assert "credentialsSecret" in message
    for secret in (creds.secret_key, seaweedfs.secret_key):
        assert secret not in message and secret not in termination.read_text()


def test_output_that_cannot_be_written(
    seaweedfs: S3Server, weed_bucket: str, aws_env, termination, capsys
):
    # The read-only identity may read and list every bucket, so it reads the dataset but
    # cannot write the output next to it.
    aws_env(seaweedfs.endpoint, seaweedfs.identities["read-only"])
    output = f"s3://{weed_bucket}/runs/denied"
    message, lines = refused(
        capsys,
        termination,
        *("--data", f"s3://{weed_bucket}/{DATA}", "--strategy", "scratch"),
        *("--epochs", "1", "--image-size", "48", "--output", output),
    )
    assert "access denied while writing" in message
    assert f"{output}/" in message and "s3:PutObject" in message
    assert keys_below(seaweedfs, weed_bucket, "runs") == set()
    # run_training checks "everything that can be refused before any training": an output
    # the credentials cannot write is such a thing. Found only at the first checkpoint, it
    # throws away the download, an epoch, or the bottleneck features of a whole dataset.
    assert events(lines, "download") == [], "the unwritable output was found after the work"


def test_dataset_key_that_would_escape_the_cache(
    moto_s3: S3Server, moto_bucket: str, termination, private_cache, tmp_path, capsys
):
    # moto keeps keys verbatim, as AWS does; below the mirror, five '..' lead to tmp_path.
    escaping = "train/cats/../../../../../escape.jpg"
    moto_s3.client().put_object(
        Bucket=moto_bucket,
        Key=f"{DATA}/{escaping}",
        Body=next((CATS_DOGS / "train" / "cats").iterdir()).read_bytes(),
    )
    message, _ = refused(
        capsys,
        termination,
        *("--data", f"s3://{moto_bucket}/{DATA}", "--strategy", "scratch"),
        *("--epochs", "1", "--image-size", "48", "--output", str(tmp_path / "out")),
    )
    assert repr(escaping) in message and f"s3://{moto_bucket}/{DATA}" in message
    assert "rename the object" in message
    assert not (tmp_path / "escape.jpg").exists()
    assert [p for p in tmp_path.rglob("escape.jpg")] == []
    assert not (tmp_path / "out").exists()


def test_missing_weights_object(moto_bucket: str, termination, tmp_path, capsys):
    weights = f"s3://{moto_bucket}/weights/missing.h5"
    message, _ = refused(
        capsys,
        termination,
        *("-f", str(bottleneck_spec(tmp_path)), "--data", f"s3://{moto_bucket}/{DATA}"),
        *("--strategy", "bottleneck", "--backbone", "mobilenet_v2", "--weights", weights),
        *("--image-size", "64", "--output", str(tmp_path / "out")),
    )
    assert f"weights file {weights!r} does not exist" in message
    assert "model.weights" in message
    assert not (tmp_path / "out").exists()


# -- 6. credentials never leak ------------------------------------------------------------------


def _readable_parts(name: str, data: bytes) -> list[tuple[str, bytes]]:
    """The object itself and, for a zip (model.keras), every member uncompressed."""
    parts = [(name, data)]
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts += [(f"{name}!{m}", archive.read(m)) for m in archive.namelist()]
    return parts


def test_credentials_appear_nowhere(
    seaweedfs: S3Server,
    weed_bucket: str,
    aws_env,
    termination: Path,
    private_cache: Path,
    tmp_path: Path,
    capsys,
    caplog,
):
    secret = seaweedfs.secret_key
    assert secret.startswith("admin-secret-") and len(secret) > 40  # distinctive
    aws_env(seaweedfs.endpoint, seaweedfs.credentials)
    caplog.set_level(logging.DEBUG)  # every logger: ict, ict_trainer.*, botocore, s3transfer
    code = main(
        [
            "-v",
            "train",
            *("-f", str(bottleneck_spec(tmp_path)), "--data", f"s3://{weed_bucket}/{DATA}"),
            *("--strategy", "bottleneck", "--backbone", "mobilenet_v2"),
            *("--weights", f"s3://{weed_bucket}/{WEIGHTS}", "--image-size", "48"),
            *("--epochs", "1", "--output", f"s3://{weed_bucket}/runs/clean"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert any(r.name.startswith("ict_trainer") for r in caplog.records)
    assert any(r.name.startswith("botocore") and r.levelno == logging.DEBUG for r in caplog.records)

    texts: list[tuple[str, bytes]] = [
        ("stdout", json.dumps(lines).encode()),
        ("stderr", err.encode()),
        ("logs", caplog.text.encode()),
        ("log records", "\n".join(r.getMessage() for r in caplog.records).encode()),
        ("termination message", termination.read_bytes()),
    ]
    client = seaweedfs.client()
    stored = keys_below(seaweedfs, weed_bucket, "runs/clean") | {
        f".ict-cache/{k}" for k in keys_below(seaweedfs, weed_bucket, ".ict-cache")
    }
    assert stored >= ARTIFACTS and any(k.endswith("manifest.json") for k in stored)
    for key in sorted(stored):
        path = key if key.startswith(".ict-cache/") else f"runs/clean/{key}"
        data = client.get_object(Bucket=weed_bucket, Key=path)["Body"].read()
        texts += _readable_parts(path, data)
    for path in private_cache.rglob("*"):
        if path.is_file():
            texts += _readable_parts(str(path), path.read_bytes())

    assert any(name.startswith("runs/clean/model.keras!") for name, _ in texts)
    leaks = [name for name, data in texts if secret.encode() in data]
    assert leaks == []
    # The key id is no secret, yet nothing of ours has a reason to carry it; botocore's own
    # DEBUG lines do (the Authorization header), so the logs are left out here.
    key_id = seaweedfs.access_key.encode()
    assert [n for n, data in texts if key_id in data and n not in ("logs", "log records")] == []
