"""Start-up: a command that fails early, or only lists, answers without loading torch, pandas or numpy."""
import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from digit_recognizer.cli import main
status = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "pandas", "numpy", "torchvision") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy}))
"""


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "missing.pt"],
    ["predict", "--model", "missing.pt", "--out", "exists.csv"],
    ["runs"],
    ["cache"],
    ["train", "--optimizer", "adam", "--epochs", "0"],
])
def test_early_answers_import_no_heavy_library(tmp_path, argv):
    (tmp_path / "exists.csv").write_text("ImageId,Label\n")
    env = {"DIGIT_RECOGNIZER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=60)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["heavy"] == [], (argv, done.stderr)
    assert done.stderr.count("\n") <= 1  # a one-line error or a listing, never a traceback
