"""A cached re-run against the first run, end to end, with a backbone whose features cost what
VGG16's do (VGG16, `weights: none`: the forward pass costs the same whatever the weights' values,
so nothing is downloaded).

Starts a local SeaweedFS, uploads cats-dogs to it, then runs `ict train` twice as separate
processes (TensorFlow's import counted, as a pod pays it), each with an empty local cache (a new
pod); output and feature cache in the bucket. Also measures, in the same run:
  - TensorFlow's import and `import ict_trainer.train` in a fresh interpreter;
  - the backbone's raw forward throughput on in-memory tensors (same model, size and batch),
    against the first run's extraction throughput (decode, resize and forward);
  - where the second run's seconds go, from the arrival times of its JSON progress lines.
Not a test: prints figures and a JSON summary last.

    python bench/cached_rerun.py                   # 2,800 images at 150 px (minutes on 2 cores)
    python bench/cached_rerun.py --per-class 100   # 100 train + 100 validation per class... fewer
    python bench/cached_rerun.py --same-output     # the second run against the first's output:
                                                   # up to date, it trains nothing
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3_data import BUCKET, DATA_PREFIX, rate, seaweedfs, stage_dataset  # bench/, as a script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ICT = Path(sys.executable).parent / "ict"


def import_seconds(module: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return round(time.monotonic() - started, 2)


def raw_forward(backbone: str, image_size: int, batch: int, images: int) -> dict:
    """Images/s of the feature extractor on tensors already in memory (after one warm-up
    batch): the floor that extraction from files is compared with."""
    import numpy as np

    from ict_api.spec import Backbone, MixedPrecision, Pooling
    from ict_trainer import backbones, models, runtime

    runtime.configure(MixedPrecision.AUTO, 0)  # the precision `ict train` picks here
    kind = Backbone(backbone)
    base = backbones.build_base(kind, image_size, "none")
    extractor = models.build_feature_extractor(
        base, backbones.preprocessing_layer(kind), Pooling.AVG
    )
    pixels = np.random.default_rng(0).uniform(0, 255, (images, image_size, image_size, 3))
    pixels = pixels.astype("float32")
    extractor.predict(pixels[:batch], batch_size=batch, verbose=0)
    started = time.monotonic()
    extractor.predict(pixels, batch_size=batch, verbose=0)
    seconds = time.monotonic() - started
    import keras

    return {
        "images": images,
        "seconds": round(seconds, 2),
        "imagesPerSecond": images / seconds,
        "precision": keras.mixed_precision.global_policy().name,
    }


def ict_train(spec: Path, output: str, cache: Path) -> dict:
    """`ict train` in a new process; its JSON lines with their arrival times."""
    env = {**os.environ, "ICT_CACHE_DIR": str(cache)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(ICT), "train", "-f", str(spec), "--output", output, "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    for line in proc.stdout:
        if line.startswith("{"):
            lines.append((time.monotonic() - started, json.loads(line)))
    if proc.wait() != 0:
        raise RuntimeError(f"ict train exited with {proc.returncode}")
    return {"seconds": round(time.monotonic() - started, 2), "events": lines}


def phases(run: dict) -> dict[str, float]:
    """Seconds between progress lines: where a run's time went."""
    marks = [("process start", 0.0)]
    seen = set()
    for at, event in run["events"]:
        name = event["event"]
        if name == "epoch":
            marks = [m for m in marks if m[0] != "head epochs"]
            if "head epochs" not in seen:
                marks.append(("features/cache load", at))
            seen.add("head epochs")
            marks.append(("head epochs", at))
        elif name in ("start", "dataset", "upToDate", "summary"):
            marks.append((name, at))
    marks.append(("exit", run["seconds"]))
    labels = {
        "start": "imports, TensorFlow start-up",
        "dataset": "listing, dataset plan",
        "upToDate": "weights, output guard, fingerprint, metrics.json read",
        "features/cache load": "weights, output guard, features (or cache load), head build",
        "head epochs": "head epochs",
        "summary": "classifier build, validation, model save, plots, report, upload (or none: "
        "up to date)",
        "exit": "process exit",
    }
    out = {}
    for (_, before), (name, at) in itertools.pairwise(marks):
        out[labels.get(name, name)] = round(at - before, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--per-class", type=int, help="first N images per split and class")
    parser.add_argument("--epochs", type=int, default=10, help="head epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--same-output",
        action="store_true",
        help="run the second training against the first's output (an up-to-date re-run)",
    )
    parser.add_argument(
        "--feature-passes", type=int, help="augmentation.featurePasses (default: the spec's)"
    )
    args = parser.parse_args()

    from ict_trainer.s3 import S3Store

    results: dict = {"load1": round(os.getloadavg()[0], 2), "sameOutput": args.same_output}
    results["tensorflowImportSeconds"] = import_seconds("tensorflow")
    results["ictTrainerImportSeconds"] = import_seconds("ict_trainer.train")
    print("imports", results["tensorflowImportSeconds"], results["ictTrainerImportSeconds"])
    with tempfile.TemporaryDirectory(prefix="ict-bench-rerun-") as scratch_dir:
        scratch = Path(scratch_dir)
        with seaweedfs(scratch):
            import boto3

            boto3.client("s3").create_bucket(Bucket=BUCKET)
            per_class = {"train": args.per_class, "validation": args.per_class}
            count, size = stage_dataset(scratch / "staged", per_class if args.per_class else None)
            started = time.monotonic()
            S3Store(f"s3://{BUCKET}/{DATA_PREFIX}").put_dir(scratch / "staged")
            results["upload"] = rate(count, size, time.monotonic() - started)
            spec = scratch / "spec.yaml"
            spec.write_text(
                json.dumps(
                    {
                        "strategy": "bottleneck",
                        "dataset": {"uri": f"s3://{BUCKET}/{DATA_PREFIX}"},
                        "model": {
                            "backbone": args.backbone,
                            "weights": "none",
                            "imageSize": args.image_size,
                        },
                        "training": {"epochs": args.epochs, "batchSize": args.batch_size},
                        **(
                            {"augmentation": {"featurePasses": args.feature_passes}}
                            if args.feature_passes is not None
                            else {}
                        ),
                    }
                )
            )
            runs = {}
            for name in ("first", "second"):
                output = "first" if args.same_output else name
                runs[name] = ict_train(spec, f"s3://{BUCKET}/runs/{output}", scratch / name)
                print(name, runs[name]["seconds"], phases(runs[name]), flush=True)
                results[f"{name}Seconds"] = runs[name]["seconds"]
                results[f"{name}Phases"] = phases(runs[name])
            metrics = json.loads(
                boto3.client("s3")
                .get_object(Bucket=BUCKET, Key="runs/first/metrics.json")["Body"]
                .read()
            )
            # Forward passes, not images: each augmented feature pass runs the training
            # images through the base once more.
            passes = metrics["spec"]["augmentation"]["featurePasses"] or 0
            counts = {split: sum(per.values()) for split, per in metrics["counts"].items()}
            forwards = counts["train"] * (1 + passes) + counts["validation"]
            extraction = forwards / metrics["durations"]["features"]
            results["featurePasses"] = passes
            results["extractionForwardsPerSecond"] = round(extraction, 1)
    forward = raw_forward(args.backbone, args.image_size, args.batch_size, min(count, 256))
    results["rawForwardImagesPerSecond"] = round(forward["imagesPerSecond"], 1)
    results["precision"] = forward["precision"]
    results["extractionOverRawForward"] = round(extraction / forward["imagesPerSecond"], 2)
    results["firstOverSecond"] = round(results["firstSeconds"] / results["secondSeconds"], 1)
    results["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
