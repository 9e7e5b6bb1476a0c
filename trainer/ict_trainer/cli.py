"""The `ict` command line: train, predict, preview, sample-data, crd, operator."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from ict_api import SpecError, load_document, load_env, load_file
from ict_api.spec import Backbone, Strategy
from ict_trainer.errors import IctError
from ict_trainer.termination import write_termination_message

log = logging.getLogger("ict")

# Flag -> dotted spec path it overrides.
TRAIN_OVERRIDES = {
    "data": "dataset.uri",
    "strategy": "strategy",
    "output": "output.uri",
    "epochs": "training.epochs",
    "image_size": "model.imageSize",
    "backbone": "model.backbone",
    "weights": "model.weights",
    "overwrite": "output.overwrite",
}


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", help="ImageClassifierTraining manifest or bare spec (YAML)")
    parser.add_argument("--data", help="dataset folder (overrides spec.dataset.uri)")
    parser.add_argument("--strategy", choices=[s.value for s in Strategy])
    parser.add_argument("--image-size", type=int, help="input side in pixels")
    parser.add_argument("--backbone", choices=[b.value for b in Backbone])
    parser.add_argument("--weights", help="imagenet, none, or a weights file path/URI")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ict", description="Train image classifiers from very little data."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a classifier as a spec says")
    _spec_arguments(train)
    train.add_argument("--output", help="output folder or s3:// URI (overrides spec.output.uri)")
    train.add_argument("--epochs", type=int, help="epochs (overrides spec.training.epochs)")
    train.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="replace a different training found in the output",
    )
    train.add_argument(
        "--spec-env",
        metavar="VAR",
        help="read the manifest (JSON or YAML) from environment variable VAR (trainer pods)",
    )
    train.add_argument(
        "--json",
        dest="json_lines",
        action="store_true",
        default=None,
        help="JSON progress lines even on a terminal",
    )
    train.set_defaults(handler=cmd_train)

    predict = commands.add_parser("predict", help="classify images with a trained model")
    predict.add_argument("model", help="model.keras written by ict train")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--classes", help="comma-separated class names (default: metrics.json)")
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    predict.set_defaults(handler=cmd_predict)

    preview = commands.add_parser("preview", help="PNG grid of augmented training images")
    _spec_arguments(preview)
    preview.add_argument("--output", default="augmentation-preview.png", help="PNG to write")
    preview.add_argument("--images", type=int, default=4, help="source images (rows)")
    preview.add_argument("--variants", type=int, default=7, help="augmented copies per image")
    preview.set_defaults(handler=cmd_preview)

    sample = commands.add_parser("sample-data", help="write a small synthetic two-class dataset")
    sample.add_argument("folder", help="new or empty folder")
    sample.add_argument("--train", type=int, default=120, help="training images per class")
    sample.add_argument("--validation", type=int, default=40, help="validation images per class")
    sample.add_argument("--size", type=int, default=96, help="image side in pixels")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=cmd_sample_data)

    operator = commands.add_parser(
        "operator", help="run the Kubernetes operator (needs the operator extra)"
    )
    _operator_arguments(operator)
    operator.set_defaults(handler=cmd_operator)

    crd = commands.add_parser("crd", help="print the ImageClassifierTraining CRD (YAML)")
    crd.set_defaults(handler=cmd_crd)
    return parser


def _operator_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from ict_operator.settings import add_arguments
    except ImportError:  # a trainer-only install: the command says so when run
        return
    add_arguments(parser)


def load_spec(args: argparse.Namespace):
    overrides = {
        path: getattr(args, flag)
        for flag, path in TRAIN_OVERRIDES.items()
        if getattr(args, flag, None) is not None
    }
    if getattr(args, "spec_env", None):
        return load_env(args.spec_env, overrides)
    if args.file:
        return load_file(args.file, overrides)
    if "dataset.uri" not in overrides:
        raise SpecError("no spec: give -f FILE.yaml, or --data FOLDER (with other flags).")
    return load_document({}, overrides)


def exit_on_sigterm(reporter, output_uri: str):
    """SIGTERM (preemption, node drain, Kueue suspend): report and exit at once.

    os._exit, not an exception: unwinding out of a running TensorFlow step and tearing the
    interpreter down under tf.data's threads crashed the process (free(): invalid next size).
    Nothing needs cleaning up: checkpoints are committed state.json-last, so dying at any
    instant is as safe as SIGKILL.
    """

    def handler(signum, frame) -> None:
        message = (
            f"terminated by SIGTERM; completed epochs are in {output_uri}/checkpoints/ "
            "and the next run with this spec resumes from them"
        )
        print(f"ict: {message}", file=sys.stderr)
        reporter.emit("terminated", message=message)
        write_termination_message({"status": "terminated", "message": message})
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signal.SIGTERM)

    return handler


def cmd_train(args: argparse.Namespace) -> int:
    from ict_trainer.progress import Reporter
    from ict_trainer.train import run_training

    name, spec = load_spec(args)
    reporter = Reporter(json_lines=args.json_lines)
    signal.signal(signal.SIGTERM, exit_on_sigterm(reporter, spec.output.uri))
    run_training(spec, name, reporter)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ict_trainer.predict import predict_files

    classes = args.classes.split(",") if args.classes else None
    for row in predict_files(Path(args.model), [Path(p) for p in args.images], classes):
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['image']}\t{row['class']}\t{row['probability']:.4f}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from ict_trainer.predict import write_preview

    _, spec = load_spec(args)
    path = write_preview(spec, Path(args.output), args.images, args.variants)
    print(path)
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from ict_trainer.sample_data import write_sample_data

    counts = write_sample_data(
        Path(args.folder),
        train=args.train,
        validation=args.validation,
        size=args.size,
        seed=args.seed,
    )
    print(f"wrote {sum(counts.values())} synthetic images to {args.folder}")
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    try:
        from ict_operator.main import run
    except ImportError as exc:
        raise IctError(
            f"the operator needs kopf and kubernetes ({exc}); install the operator extra: "
            "pip install 'ict-operator[operator]'"
        ) from None
    try:
        return run(args)
    except ValueError as exc:
        raise IctError(str(exc)) from None


def cmd_crd(args: argparse.Namespace) -> int:
    from ict_api.crd import render_crd_yaml

    print(render_crd_yaml(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="ict: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except (SpecError, IctError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.command == "train":
            write_termination_message({"status": "failed", "message": str(exc)[:3000]})
            if args.json_lines or not sys.stdout.isatty():
                print(json.dumps({"event": "error", "message": str(exc)}), flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
