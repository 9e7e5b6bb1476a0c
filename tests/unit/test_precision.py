"""training.mixedPrecision: which policy each setting takes on each kind of machine."""

from __future__ import annotations

import pytest

from ict_api.spec import MixedPrecision
from ict_trainer import runtime
from ict_trainer.runtime import POLICIES, Device

# /proc/cpuinfo flag lines of real machines, trimmed.
CPUS = {
    "sapphire rapids (AMX)": "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8",
    "cooper lake (AVX-512 BF16)": "fpu avx2 avx512f avx512_bf16",
    "skylake (AVX-512, no BF16)": "fpu avx2 avx512f avx512bw",
    "zen 2": "fpu avx2 sha_ni",
}


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.parametrize(
    ("cpu", "gpus", "policy"),
    [
        ("sapphire rapids (AMX)", 0, "mixed_bfloat16"),
        ("cooper lake (AVX-512 BF16)", 0, "mixed_bfloat16"),
        ("skylake (AVX-512, no BF16)", 0, "float32"),
        ("zen 2", 0, "float32"),
        ("zen 2", 1, "mixed_float16"),
        ("sapphire rapids (AMX)", 2, "mixed_float16"),
    ],
)
def test_auto_takes_the_fast_type_of_the_machine(tmp_path, monkeypatch, cpu, gpus, policy):
    monkeypatch.delenv(runtime.BF16_ENV, raising=False)
    flags = runtime.cpu_flags(cpuinfo(tmp_path, CPUS[cpu]))
    device = runtime.device_kind(gpus, runtime.cpu_has_bf16(flags))
    assert POLICIES[(MixedPrecision.AUTO, device)] == policy


def test_the_environment_overrides_the_flags():
    with_bf16 = frozenset(CPUS["cooper lake (AVX-512 BF16)"].split())
    assert runtime.cpu_has_bf16(with_bf16, env={runtime.BF16_ENV: "0"}) is False
    assert runtime.cpu_has_bf16(frozenset(), env={runtime.BF16_ENV: "1"}) is True
    assert runtime.cpu_has_bf16(with_bf16, env={runtime.BF16_ENV: "yes please"}) is True


def test_unreadable_cpuinfo_means_no_flags(tmp_path):
    assert runtime.cpu_flags(tmp_path / "missing") == frozenset()
    assert runtime.cpu_flags(cpuinfo(tmp_path, "fpu avx2")) == {"fpu", "avx2"}


def test_every_setting_has_a_policy_on_every_device_and_off_is_float32():
    for setting in MixedPrecision:
        for device in Device:
            assert POLICIES[(setting, device)] in ("float32", "mixed_float16", "mixed_bfloat16")
    assert {POLICIES[(MixedPrecision.OFF, d)] for d in Device} == {"float32"}
    assert POLICIES[(MixedPrecision.ON, Device.CPU)] == "mixed_bfloat16"
