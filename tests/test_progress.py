"""Long work is never silent: L-BFGS fits say what they are doing from the start, and how far they are."""
import os
import re
import subprocess
import sys
import threading
import time

from conftest import ROOT


def timed_lines(*args: str, cwd, alongside=None) -> list[tuple[float, str]]:
    """Each line a `digit-recognizer` process prints on stdout, with the seconds since it started
    (and `alongside()` called in a thread meanwhile, from its start)."""
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    beside = threading.Thread(target=alongside or (lambda: None))
    beside.start()
    lines = [(time.monotonic() - start, line.rstrip("\n")) for line in process.stdout]
    beside.join()
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return lines


def pace() -> float:
    """How many times longer than its own CPU time a CPU-bound process takes on this machine now: 1 with a
    core to itself, about 3 beside six busy processes on two cores. (A pure-Python loop that runs until
    it has had 0.2 s of CPU, timed by itself, so that the interpreter's start-up is not counted.)"""
    loop = ("import time\nwall, cpu = time.monotonic(), time.process_time()\n"
            "while time.process_time() - cpu < 0.2:\n    pass\nprint((time.monotonic() - wall) / (time.process_time() - cpu))")
    done = subprocess.run([sys.executable, "-c", loop], capture_output=True, text=True, timeout=120, check=True)
    return max(1.0, float(done.stdout))


def test_an_auto_run_says_within_seconds_that_it_is_fitting_and_how_far_it_is(tmp_path):
    paces = [pace()]
    lines = timed_lines("train", "--folds", "5", "--weight-decay", "auto", "--out", str(tmp_path / "runs"), cwd=ROOT,
                        alongside=lambda: paces.append(pace()))
    paces.append(pace())
    started = [t for t, line in lines if "fitting 25 models to the optimum by L-BFGS" in line]  # 5 folds x 5 C
    # Imports, the sample and its features come first: 5 s where the run has a core to itself, and as
    # many times that as a busy machine stretches a process (load comes and goes: the slowest of the
    # paces measured before the run, beside its start, and after it). A run silent until its fit ends
    # takes far longer at any pace.
    allowed = 5.0 * max(paces)
    assert started and started[0] < allowed, (lines[:5], [f"{p:.2f}" for p in paces])
    progress = [(t, line) for t, line in lines if re.match(
        r"5-fold CV L-BFGS iteration \d+: largest gradient \d\.\d\de-\d\d, \d+ of 25 models still moving; "
        r"\d+ s elapsed, (about (\d+ min )?\d+ s left|done)$", line)]
    # The first line, after the first iteration, already says how long is left, and within those seconds too.
    assert progress and progress[0][1].endswith(" s left") and progress[0][0] < allowed, (lines, paces)
    last = progress[-1][1]
    assert ", 0 of 25 models still moving; " in last and last.endswith(", done"), lines  # the last says it converged
    iterations = [int(re.search(r"iteration (\d+)", line).group(1)) for _, line in progress]
    assert iterations == sorted(iterations) and len(progress) < iterations[-1]  # a line every few seconds, not each step
    # The estimate printed with the CV estimate shows its standard error to a non-zero digit.
    (estimate,) = [line for _, line in lines if line.startswith("expected public score")]
    assert re.fullmatch(r"expected public score 0\.\d{4} ± 0\.\d{4} \(5-fold CV\), C = [\d.]+ chosen by it", estimate)
    assert re.search(r"± 0\.0*[1-9]", estimate), estimate
    assert any("refit: fitting the model to the optimum by L-BFGS" in line for _, line in lines)


def test_the_default_fit_says_it_is_fitting_to_the_optimum(tmp_path):
    lines = [line for _, line in timed_lines("train", "--out", str(tmp_path / "runs"), cwd=ROOT)]
    assert "train: fitting the model to the optimum by L-BFGS (stops when every gradient entry is at most 0.0001)" in lines
    assert re.search(r"fitted to the optimum by L-BFGS in \d+ iterations", "\n".join(lines))
