"""Long work is never silent: L-BFGS fits say what they are doing from the start, and how far they are."""
import os
import re
import subprocess
import sys
import time

from conftest import ROOT


def timed_lines(*args: str, cwd) -> list[tuple[float, str]]:
    """Each line a `digit-recognizer` process prints on stdout, with the seconds since it started."""
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [(time.monotonic() - start, line.rstrip("\n")) for line in process.stdout]
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return lines


def test_an_auto_run_says_within_seconds_that_it_is_fitting_and_how_far_it_is(tmp_path):
    lines = timed_lines("train", "--folds", "5", "--weight-decay", "auto", "--out", str(tmp_path / "runs"), cwd=ROOT)
    started = [t for t, line in lines if "fitting 20 models to the optimum by L-BFGS" in line]
    assert started and started[0] < 5.0, lines[:5]  # imports, the sample and its features come first
    progress = [line for _, line in lines if re.match(r"5-fold CV L-BFGS iteration \d+: largest gradient \d\.\d\de-\d\d, "
                                                      r"\d+ of 20 models still moving$", line)]
    assert progress and progress[-1].endswith(", 0 of 20 models still moving"), lines  # the last says it converged
    iterations = [int(re.search(r"iteration (\d+)", line).group(1)) for line in progress]
    assert iterations == sorted(iterations) and len(progress) < iterations[-1]  # a line every few seconds, not each step
    assert any("refit: fitting the model to the optimum by L-BFGS" in line for _, line in lines)


def test_the_default_fit_says_it_is_fitting_to_the_optimum(tmp_path):
    lines = [line for _, line in timed_lines("train", "--out", str(tmp_path / "runs"), cwd=ROOT)]
    assert "train: fitting the model to the optimum by L-BFGS (stops when every gradient entry is at most 0.0001)" in lines
    assert re.search(r"fitted to the optimum by L-BFGS in \d+ iterations", "\n".join(lines))
