"""The operator's settings: flags, with environment variables as defaults (what a chart sets)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

from ict_api.spec import QUANTITY_PATTERN

ALL_NAMESPACES = "*"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator needs to build Jobs and to run; no Kubernetes I/O here."""

    trainer_image: str
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    trainer_image_pull_policy: str = "IfNotPresent"
    gpu_resource: str = "nvidia.com/gpu"
    default_cpu: str = "2"
    default_memory: str = "8Gi"
    health_port: int = 8080
    log_format: str = "plain"
    verbose: bool = False
    # Progress-only status patches are sent at most this often per resource; phase and
    # condition changes go out at once.
    status_interval: float = 5.0
    scratch_size: str | None = None  # sizeLimit of the trainer's scratch emptyDir

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        action="append",
        help="namespace to watch (repeatable; kopf globs allowed); env ICT_WATCH_NAMESPACES, "
        "comma-separated, '*' for all",
    )
    parser.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--trainer-image",
        default=env("ICT_TRAINER_IMAGE"),
        help="image of the trainer Jobs (env ICT_TRAINER_IMAGE; required)",
    )
    parser.add_argument(
        "--trainer-image-pull-policy",
        default=env("ICT_TRAINER_IMAGE_PULL_POLICY", "IfNotPresent"),
        choices=PULL_POLICIES,
    )
    parser.add_argument(
        "--gpu-resource",
        default=env("ICT_GPU_RESOURCE", "nvidia.com/gpu"),
        help="extended resource that spec.resources.gpus requests (env ICT_GPU_RESOURCE)",
    )
    parser.add_argument("--default-cpu", default=env("ICT_DEFAULT_CPU", "2"))
    parser.add_argument("--default-memory", default=env("ICT_DEFAULT_MEMORY", "8Gi"))
    parser.add_argument(
        "--health-port",
        type=int,
        default=int(env("ICT_HEALTH_PORT", "8080")),
        help="port of /healthz (0: off)",
    )
    parser.add_argument(
        "--log-format", choices=("plain", "json"), default=env("ICT_LOG_FORMAT", "plain")
    )
    parser.add_argument(
        "--scratch-size",
        default=env("ICT_SCRATCH_SIZE") or None,
        help="sizeLimit of the trainer's /scratch emptyDir, e.g. 50Gi (datasets and features "
        "are cached there); unset: no limit (env ICT_SCRATCH_SIZE)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=float(env("ICT_STATUS_INTERVAL", "5")),
        help="seconds between progress-only status patches of one resource",
    )


def settings_from(args: argparse.Namespace, verbose: bool = False) -> OperatorSettings:
    """Settings from parsed flags; raises ValueError naming the bad value and the fix."""
    if not args.trainer_image:
        raise ValueError(
            "no trainer image: pass --trainer-image IMAGE or set ICT_TRAINER_IMAGE "
            "(the chart sets it from values.trainer.image)."
        )
    for name in ("default_cpu", "default_memory"):
        value = getattr(args, name)
        if not _is_quantity(value):
            raise ValueError(
                f"--{name.replace('_', '-')}: got {value!r}; give a Kubernetes quantity "
                "such as 2, 500m or 8Gi."
            )
    if args.scratch_size is not None and not _is_quantity(args.scratch_size):
        raise ValueError(
            f"--scratch-size: got {args.scratch_size!r}; give a Kubernetes quantity such as 50Gi."
        )
    if args.status_interval < 0:
        raise ValueError(f"--status-interval: got {args.status_interval!r}; give 0 or more.")
    return OperatorSettings(
        trainer_image=args.trainer_image,
        namespaces=_namespaces(args),
        trainer_image_pull_policy=args.trainer_image_pull_policy,
        gpu_resource=args.gpu_resource,
        default_cpu=str(args.default_cpu),
        default_memory=str(args.default_memory),
        health_port=args.health_port,
        log_format=args.log_format,
        verbose=verbose or os.environ.get("ICT_LOG_LEVEL", "").lower() == "debug",
        status_interval=args.status_interval,
        scratch_size=args.scratch_size,
    )


def _namespaces(args: argparse.Namespace) -> tuple[str, ...]:
    if args.all_namespaces:
        return ()
    given = args.namespaces
    if not given:
        given = [n for n in os.environ.get("ICT_WATCH_NAMESPACES", "").split(",") if n.strip()]
    names = tuple(n.strip() for n in given)
    if not names:
        raise ValueError(
            "no namespace to watch: pass --namespace NS (repeatable) or --all-namespaces, "
            "or set ICT_WATCH_NAMESPACES (comma-separated, '*' for all)."
        )
    return () if ALL_NAMESPACES in names else names


def _is_quantity(value: str) -> bool:
    return re.fullmatch(QUANTITY_PATTERN, str(value)) is not None
