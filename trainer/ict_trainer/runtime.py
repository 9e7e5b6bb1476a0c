"""Using what the machine has: GPUs (mirrored, mixed precision), else every allowed CPU core."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
import tensorflow as tf

from ict_api.spec import MixedPrecision

log = logging.getLogger(__name__)

# Policy by (precision setting, has GPU); bfloat16 is the CPU's fast type (AVX-512 BF16/AMX).
POLICIES = {
    (MixedPrecision.AUTO, True): "mixed_float16",
    (MixedPrecision.AUTO, False): "float32",
    (MixedPrecision.ON, True): "mixed_float16",
    (MixedPrecision.ON, False): "mixed_bfloat16",
    (MixedPrecision.OFF, True): "float32",
    (MixedPrecision.OFF, False): "float32",
}


def cpu_quota() -> int | None:
    """CPUs allowed by the cgroup (a pod's CPU limit), which os.cpu_count() ignores."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, int(int(quota) / int(period)))


def visible_gpus() -> int:
    """GPUs TensorFlow can use, logged: a GPU node whose image lacks CUDA TensorFlow shows 0."""
    gpus = tf.config.list_physical_devices("GPU")
    log.info("TensorFlow %s sees %d GPU(s): %s", tf.__version__, len(gpus), [g.name for g in gpus])
    return len(gpus)


def configure(mixed_precision: MixedPrecision, seed: int) -> tf.distribute.Strategy:
    """Seeds, precision policy, thread pools; returns the distribution strategy to build in."""
    keras.utils.set_random_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    policy = POLICIES[(mixed_precision, bool(gpus))]
    keras.mixed_precision.set_global_policy(policy)
    cores = min(filter(None, (cpu_quota(), len(os.sched_getaffinity(0)))))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(min(cores, 4))
    except RuntimeError:  # already initialised, e.g. a second run in one process
        pass
    log.info("devices: %d GPU(s), %d CPU core(s); precision policy %s", len(gpus), cores, policy)
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
