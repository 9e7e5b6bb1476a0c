"""Using what the machine has: GPUs (mirrored, mixed precision), else every allowed CPU core."""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path

import keras
import tensorflow as tf

from ict_api.spec import MixedPrecision

log = logging.getLogger(__name__)


class Device(StrEnum):
    """What computes, as far as precision goes."""

    GPU = "gpu"
    BF16_CPU = "bf16_cpu"  # a CPU with bfloat16 instructions (AVX-512 BF16, AMX)
    CPU = "cpu"


# Policy by (precision setting, device). auto takes the fast type where the hardware has it:
# float16 on a GPU, bfloat16 on a CPU that computes it natively (measured 3.2x on the blog's
# convnet, bench/RESULTS.md); elsewhere bfloat16 is emulated and slower than float32. The output
# layer and the loss stay float32 whatever the policy (models.output_layer).
POLICIES = {
    (MixedPrecision.AUTO, Device.GPU): "mixed_float16",
    (MixedPrecision.AUTO, Device.BF16_CPU): "mixed_bfloat16",
    (MixedPrecision.AUTO, Device.CPU): "float32",
    (MixedPrecision.ON, Device.GPU): "mixed_float16",
    (MixedPrecision.ON, Device.BF16_CPU): "mixed_bfloat16",
    (MixedPrecision.ON, Device.CPU): "mixed_bfloat16",
    (MixedPrecision.OFF, Device.GPU): "float32",
    (MixedPrecision.OFF, Device.BF16_CPU): "float32",
    (MixedPrecision.OFF, Device.CPU): "float32",
}
# CPU flags (Linux /proc/cpuinfo names) that mean bfloat16 matrix arithmetic in hardware.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# "1" or "0" overrides the detection (a VM that hides its flags, or to compare both).
BF16_ENV = "ICT_CPU_BF16"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of the first CPU listed (all cores of one machine share them); empty where
    /proc/cpuinfo is missing (macOS) or unreadable."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_has_bf16(flags: frozenset[str] | None = None, env: dict | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively: $ICT_CPU_BF16 if set, else its flags."""
    override = (os.environ if env is None else env).get(BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    if override:
        log.warning("ignoring %s=%r: set it to 1 or 0", BF16_ENV, override)
    return bool(BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags))


def device_kind(gpus: int, bf16: bool) -> Device:
    if gpus:
        return Device.GPU
    return Device.BF16_CPU if bf16 else Device.CPU


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
    """GPUs TensorFlow can use (the start event carries it, and `configure` logs it): a GPU
    node whose image lacks CUDA TensorFlow shows 0."""
    return len(tf.config.list_physical_devices("GPU"))


def configure(mixed_precision: MixedPrecision, seed: int) -> tf.distribute.Strategy:
    """Seeds, precision policy, thread pools; returns the distribution strategy to build in."""
    keras.utils.set_random_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    policy = POLICIES[(mixed_precision, device_kind(len(gpus), cpu_has_bf16()))]
    keras.mixed_precision.set_global_policy(policy)
    cores = min(filter(None, (cpu_quota(), len(os.sched_getaffinity(0)))))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(min(cores, 4))
    except RuntimeError:  # already initialised, e.g. a second run in one process
        pass
    log.info(
        "devices: TensorFlow %s sees %d GPU(s), %d CPU core(s); precision policy %s",
        tf.__version__,
        len(gpus),
        cores,
        policy,
    )
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
