"""The S3 data path, measured against a local SeaweedFS: first download, re-run, warm cache.

Starts `weed mini` (a real S3 server with SigV4) on free ports in a temporary folder, uploads
../shared/datasets/cats-dogs to it (timed on its own), then measures through the trainer's code:
  a) the first download: DataSource(spec).fetch() into an empty cache (listing, parallel
     download, image checks), and Store.sync_down alone into another empty folder;
  b) a re-run's data phase with the same cache: listing + fetch, which should download nothing;
  c) end to end, a `bottleneck` run (MobileNetV2 alpha 0.35 with the shared weights) with the
     output and the feature cache on SeaweedFS, then the same spec again from an empty local
     cache (a new pod): features from the bucket, no image download.
Not a test: it prints figures and a JSON summary last.

    python bench/s3_data.py            # 2,800 images (several minutes on 2 cores)
    python bench/s3_data.py --quick    # 200 images
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

# Run as a script, only bench/ is on sys.path; the repository root makes `tests` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import s3_clients  # bench/, on sys.path when run as a script

from tests import s3servers

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# ../shared next to the checkout; ICT_SHARED_DIR where the checkout lives elsewhere (a worktree).
SHARED = Path(os.environ.get("ICT_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "datasets" / "cats-dogs"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_no_top.h5"
BUCKET = "ict-bench"
DATA_PREFIX = "datasets/cats-dogs"
# --quick: per class, 75 train + 25 validation images = 200 in all.
QUICK = {"train": 75, "validation": 25}


# -- measurements -------------------------------------------------------------------------------


def stage_dataset(target: Path, per_class: dict[str, int] | None) -> tuple[int, int]:
    """Symlinks to the shared images (all, or the first N per split and class)."""
    count = size = 0
    for split in ("train", "validation"):
        for cls_dir in sorted((DATA / split).iterdir()):
            files = sorted(cls_dir.iterdir())
            if per_class:
                files = files[: per_class[split]]
            (target / split / cls_dir.name).mkdir(parents=True)
            for path in files:
                (target / split / cls_dir.name / path.name).symlink_to(path)
                count += 1
                size += path.stat().st_size
    return count, size


class Events(io.StringIO):
    """A Reporter stream that keeps the JSON progress lines."""

    def events(self, kind: str) -> list[dict]:
        lines = [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]
        return [line for line in lines if line["event"] == kind]


def rate(objects: int, nbytes: int, seconds: float) -> dict:
    seconds = max(seconds, 1e-9)
    return {
        "objects": objects,
        "megabytes": round(nbytes / 1e6, 2),
        "seconds": round(seconds, 3),
        "objectsPerSecond": round(objects / seconds, 1),
        "megabytesPerSecond": round(nbytes / 1e6 / seconds, 2),
    }


def data_phase(spec) -> dict:
    """Listing and DataSource.fetch() as run_training does them, with the current cache."""
    from ict_trainer.progress import Reporter
    from ict_trainer.sources import DataSource

    stream = Events()
    reporter = Reporter(stream, json_lines=True)
    started = time.monotonic()
    source = DataSource(spec, reporter)
    listed = time.monotonic()
    dataset = source.fetch()
    done = time.monotonic()
    (download,) = stream.events("download")
    return {
        "listSeconds": round(listed - started, 3),
        "fetchSeconds": round(done - listed, 3),
        "totalSeconds": round(done - started, 3),
        "downloaded": download["downloaded"],
        "skipped": download["skipped"],
        "syncSeconds": download["seconds"],
        "download": rate(download["downloaded"], download["bytes"], download["seconds"]),
        "images": len(dataset.train) + len(dataset.validation),
    }


def training_run(spec, label: str, cache: Path) -> dict:
    from ict_trainer.progress import Reporter
    from ict_trainer.train import run_training

    stream = Events()
    started = time.monotonic()
    summary = run_training(spec, label, Reporter(stream, json_lines=True))
    seconds = time.monotonic() - started
    downloads = stream.events("download")
    (features,) = stream.events("features")
    return {
        "seconds": round(seconds, 2),
        "cacheHit": features["cacheHit"],
        "imagesDownloaded": sum(d["downloaded"] for d in downloads),
        # Dataset files in the local cache afterwards: on a cache hit only the report's gallery.
        "localImages": sum(
            1
            for p in (cache / "datasets").rglob("*")
            if p.is_file() and not p.name.startswith(".ict-")
        ),
        "valAccuracy": round(summary["final"]["val_accuracy"], 4),
        "epochs": len(stream.events("epoch")),
    }


def guarded(results: dict, name: str, measure: Callable[[], dict]) -> None:
    """Runs one measurement; a failure is recorded (and printed) instead of ending the bench."""
    try:
        results[name] = measure()
    except Exception as exc:
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(name, json.dumps(results[name]), flush=True)


@contextlib.contextmanager
def seaweedfs(scratch: Path) -> Iterator[float]:
    """`weed mini` under scratch, with the AWS_* variables pointing boto3 (and `aws`) at it;
    yields the seconds it took to answer S3."""
    import boto3
    from botocore.config import Config

    access_key = f"bench{uuid.uuid4().hex[:8]}"
    secret_key = f"bench-secret-{uuid.uuid4().hex}"
    root = scratch / "weed"
    root.mkdir()
    config = root / "s3.json"
    s3servers.write_s3_config(config, [("admin", access_key, secret_key, s3servers.ADMIN_ACTIONS)])
    with s3servers.weed_mini(root, config) as (proc, endpoint):
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": access_key,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(scratch / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        client = boto3.session.Session().client(
            "s3", config=Config(s3={"addressing_style": "path"})
        )
        yield round(s3servers.wait_for_s3(client, proc, root / "weed.log"), 2)


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images instead of 2,800")
    parser.add_argument("--image-size", type=int, default=160, choices=[160, 224])
    parser.add_argument("--epochs", type=int, default=10, help="head epochs of each run")
    parser.add_argument(
        "--clients-only", action="store_true", help="the download clients, no training runs"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="the trainer's INFO logs")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="ict: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # Keras' retracing warnings say nothing about the data path
        logging.getLogger("tensorflow").setLevel(logging.ERROR)

    import boto3
    from botocore.config import Config

    import ict_trainer.train  # noqa: F401 - TensorFlow's import is not part of any figure
    from ict_api import load_document
    from ict_trainer.s3 import S3Store

    results: dict = {"mode": "quick" if args.quick else "full"}
    with tempfile.TemporaryDirectory(prefix="ict-bench-s3-") as scratch_dir:
        scratch = Path(scratch_dir)
        with seaweedfs(scratch) as start_seconds:
            results["serverStartSeconds"] = start_seconds
            client = boto3.session.Session().client(
                "s3", config=Config(s3={"addressing_style": "path"})
            )
            client.create_bucket(Bucket=BUCKET)
            staged = scratch / "staged"
            count, size = stage_dataset(staged, QUICK if args.quick else None)
            started = time.monotonic()
            S3Store(f"s3://{BUCKET}/{DATA_PREFIX}").put_dir(staged)
            results["upload"] = rate(count, size, time.monotonic() - started)
            print("upload", json.dumps(results["upload"]), flush=True)

            data_uri = f"s3://{BUCKET}/{DATA_PREFIX}"
            _, data_spec = load_document({}, {"dataset.uri": data_uri})

            def sync_down() -> dict:
                store = S3Store(data_uri)
                stats = store.sync_down("", scratch / "sync-down")
                return rate(stats.downloaded, stats.bytes, stats.seconds)

            def use_cache(name: str) -> Path:
                os.environ["ICT_CACHE_DIR"] = str(scratch / name)
                return scratch / name

            guarded(results, "storeSyncDown", sync_down)

            def clients() -> dict:
                listed = S3Store(data_uri).list()
                objects = [(f"{DATA_PREFIX}/{o.key}", o.size) for o in listed]

                def trainer(folder: Path) -> None:
                    S3Store(data_uri).sync_down("", folder, listed)

                return s3_clients.compare(BUCKET, DATA_PREFIX, objects, scratch, trainer)

            guarded(results, "clients", clients)
            if args.clients_only:
                return report(results)
            use_cache("cache-data")
            guarded(results, "firstFetch", lambda: data_phase(data_spec))
            guarded(results, "rerunFetch", lambda: data_phase(data_spec))

            def bottleneck_spec(run: str):
                overrides = {
                    "strategy": "bottleneck",
                    "dataset.uri": data_uri,
                    "output.uri": f"s3://{BUCKET}/runs/{run}",
                    "model.backbone": "mobilenet_v2",
                    "model.alpha": 0.35,
                    "model.weights": str(WEIGHTS),
                    "model.imageSize": args.image_size,
                    "training.epochs": args.epochs,
                    "training.optimizer": "adam",
                }
                return load_document({}, overrides)[1]

            for name, run in (("bottleneckFirst", "first"), ("bottleneckSecond", "second")):
                cache = use_cache(f"cache-{run}-pod")  # a new pod: nothing local
                guarded(
                    results, name, lambda r=run, c=cache: training_run(bottleneck_spec(r), r, c)
                )

    first, second = results.get("bottleneckFirst", {}), results.get("bottleneckSecond", {})
    if "seconds" in first and "seconds" in second:
        results["bottleneckFirstOverSecond"] = round(first["seconds"] / second["seconds"], 2)
    return report(results)


def report(results: dict) -> int:
    """Prints the JSON summary; 1 when a measurement failed."""
    failed = [
        name for name, value in results.items() if isinstance(value, dict) and "error" in value
    ]
    results["failed"] = failed
    clients = {k: v for k, v in results.get("clients", {}).items() if "objectsPerSecond" in v}
    if "trainer S3Store.sync_down" in clients:
        trainer = clients["trainer S3Store.sync_down"]["objectsPerSecond"]
        results["clientsOverTrainer"] = {
            name: round(v["objectsPerSecond"] / trainer, 2) for name, v in clients.items()
        }
    results["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except s3servers.WeedMiniError as exc:  # the server is stopped by now
        sys.exit(str(exc))
