"""What a person sees on stderr: ict's own lines only, unless -v; and memory stays bounded on
an image too large to decode. Runs the installed console entry point in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import image_tree, write_huge_png

pytestmark = pytest.mark.slow

ICT = [sys.executable, "-m", "ict_trainer.cli"]
NOISE = ("oneDNN", "absl", "fontManager", "tensorflow", "WARNING")


def fresh_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "TF_CPP_MIN_LOG_LEVEL")}
    env["ICT_CACHE_DIR"] = str(tmp_path / "cache")  # an empty cache: matplotlib builds its own
    return env


def test_a_default_run_prints_only_ict_lines_on_stderr(tmp_path):
    data = image_tree(tmp_path / "data", {"cats": 5, "dogs": 5}, suffix=".png")
    output = tmp_path / "my-first-run"
    run = subprocess.run(
        [*ICT, "train", "--data", str(data), "--strategy", "scratch", "--epochs", "1",
         "--image-size", "48", "--output", str(output)],
        capture_output=True, text=True, env=fresh_env(tmp_path), check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("ict: ") for line in lines), run.stderr
    assert not any(word in run.stderr for word in NOISE), run.stderr
    assert (tmp_path / "cache" / "matplotlib").is_dir()  # its font cache lives with ict's
    # No manifest: the run is named after its output folder.
    assert json.loads((output / "metrics.json").read_text())["name"] == "my-first-run"
    assert json.loads(run.stdout.splitlines()[0])["name"] == "my-first-run"


# Runs `ict ARGS` and writes the process's peak resident memory (VmHWM, KiB) to a file; unlike
# ru_maxrss it is not inherited from the (large) test process that forked it.
PEAK_MEMORY = """
import sys
from ict_trainer.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:")).split()[1]
    with open(sys.argv[1], "w") as out:
        out.write(peak)
sys.exit(code)
"""


def test_predict_on_an_image_too_large_to_decode_names_it_in_bounded_memory(tmp_path):
    huge = write_huge_png(tmp_path / "huge.png")
    peak = tmp_path / "peak"
    predict = ["predict", str(tmp_path / "model.keras"), str(huge)]
    run = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, str(peak), *predict],
        capture_output=True, text=True, env=fresh_env(tmp_path), check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert f"cannot classify {str(huge)!r}: image too large to decode safely" in run.stderr
    assert "Traceback" not in run.stderr
    # TensorFlow's import alone peaks near 600 MiB; decoding the image would add 900 MB at
    # least (2.7 GB as RGB).
    assert int(peak.read_text()) < 1200 * 1024
