"""Start-up: a command that fails early, or only lists, answers without loading torch, pandas or numpy.

`train` is the exception by design: its flags are the kernel's settings, and the kernel (one source file
that is also the Kaggle notebook) imports torch, so `train --help` and a mistyped train flag wait for it."""
import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from digit_recognizer.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:  # --help
    status = exc.code
heavy = sorted(m for m in ("torch", "pandas", "numpy", "torchvision", "matplotlib") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy}))
"""
ALL = ["matplotlib", "numpy", "pandas", "torch", "torchvision"]


@pytest.mark.parametrize("argv, unloaded", [
    (["predict", "--model", "missing.pt"], ALL),
    (["predict", "--model", "missing.pt", "--out", "exists.csv"], ALL),
    (["runs"], ALL),
    (["cache"], ALL),
    (["--help"], ALL),
    (["kernels", "--help"], ALL),
    (["kernels", "push", "--help"], ALL),
    # The Kaggle commands, here without credentials: they never need the kernel, so never torch.
    (["kernels", "status"], ["torch", "matplotlib"]),
    (["kernels", "push"], ["torch", "matplotlib"]),
    (["submit"], ["torch", "matplotlib"]),
    (["submissions"], ["torch", "matplotlib"]),
    (["leaderboard"], ["torch", "matplotlib"]),
    (["download"], ["torch", "matplotlib"]),
])
def test_early_answers_and_kaggle_commands_do_not_load_the_training_kernel(tmp_path, argv, unloaded):
    (tmp_path / "exists.csv").write_text("ImageId,Label\n")
    env = {"DIGIT_RECOGNIZER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=60)
    result = json.loads(done.stdout.splitlines()[-1])
    assert not set(result["heavy"]) & set(unloaded), (argv, result, done.stderr)
    assert done.stderr.count("\n") <= 1  # a one-line error or a listing, never a traceback
