"""Ctrl-C, SIGHUP or a kill at the very start of a run (issue 28, item 7): whatever moment it lands, the
message says truthfully what was left, and whatever a kill leaves, a later run sweeps.

The moments are driven, not hoped for: each `train` below is a real process (forked from one that has
imported the kit once, so that dozens of them take seconds, not minutes) in which a trace function counts
the lines the run's setup executes (`run_folders.run_folder` up to the moment it hands the staging folder
to the run, with the steps it calls to make that folder) and at line K sends the process the signal
itself: a real signal, handled by the kit's real handlers, for every K in turn. Nothing in the kit knows
it is being tested.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import past_run_id, run_cli
from digit_recognizer.run_folders import OWNER_FILE
from test_bad_input import earlier_run, snapshot
from test_faults import write_data

MESSAGE = "digit-recognizer: {}; no run folder was left behind and earlier runs are untouched"
REACHED_THE_RUN = 99  # a trial's exit status when line K is beyond the run folder's setup

# `python -c SIGNALLER TRIALS`: TRIALS is a JSON list of [K, SIGNUM, DATA, RUNS, LOG]; each runs
# `digit-recognizer train --data DATA --out RUNS` in a child process, its stdout and stderr in
# LOG.stdout and LOG.stderr, with SIGNUM sent to the child by itself at the K-th line run by the setup:
# from the call of run_folders.run_folder to its first yield, counting the lines of the functions in
# run_folders.py and interrupt_hold.py that make the staging folder and its owner file and hold signals
# back (not those of the sweep of earlier leftovers, whose loop would multiply the trials; it has tests
# of its own). Trials run in turn until one reaches the run unsignalled; the exit statuses are printed
# as a JSON list.
SIGNALLER = r"""
import json, os, sys
import pandas  # what a train imports before its run folder, imported once here for every trial
import digit_recognizer.cli, digit_recognizer.kernel, digit_recognizer.local_data
import digit_recognizer.start
from digit_recognizer import interrupt_hold, run_folders

setup = run_folders.run_folder.__wrapped__.__code__
counted = {run_folders.__file__, interrupt_hold.__file__}
not_counted = {"sweep_leftovers", "refuse_append_only", "_remove_staging", "_remove_empty"}


def in_the_sweep(frame):
    while frame is not None and frame.f_code is not setup:
        if frame.f_code.co_name in not_counted:
            return True
        frame = frame.f_back
    return False


def child(target, signum, data, runs, log):
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(f"{log}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    seen = 0
    started = False

    def lines(frame, event, arg):
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == target:
                sys.settrace(None)
                os.kill(os.getpid(), signum)
                return None
        elif event == "return" and frame.f_code is setup and seen < target:  # its first yield: no signal sent
            os._exit(99)
        return lines

    def calls(frame, event, arg):
        nonlocal started
        started = started or frame.f_code is setup
        return lines if started and seen < target and frame.f_code.co_filename in counted and not in_the_sweep(frame) \
            else None

    sys.argv = ["digit-recognizer", "train", "--data", data, "--runs", runs]
    sys.settrace(calls)
    digit_recognizer.start.run()  # ends the process with the command's status


statuses = []
for target, signum, data, runs, log in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        child(target, signum, data, runs, log)
    statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    if statuses[-1] == 99:
        break
print(json.dumps(statuses))
"""


def signalled_trains(trials: list[tuple[int, int, Path, Path, Path]]) -> list[int]:
    """Each trial's exit status (negative: killed by that signal), in order, up to the first that reached the run.

    (The trials share one data folder: its parse is cached after the first, which keeps each to a tenth of a second.)
    """
    spec = [[line, signum, str(data), str(runs), str(log)] for line, signum, data, runs, log in trials]
    done = subprocess.run([sys.executable, "-c", SIGNALLER, json.dumps(spec)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_signal_at_any_line_of_a_runs_start_leaves_nothing_and_says_so(tmp_path):
    """SIGINT and SIGHUP, each at every line of the setup, each into a folder holding an earlier run. The
    interrupt of item 7 landed between the staging folder's mkdir and its owner file's write, leaving the
    folder behind beside a message saying "no run folder was left behind"."""
    data = write_data(tmp_path / "data")
    trials = []
    for line in range(1, 151):
        for signum in (signal.SIGINT, signal.SIGHUP):
            runs = tmp_path / f"line{line}-{signal.Signals(signum).name}"
            earlier_run(runs)
            trials.append((line, signum, data, runs, tmp_path / f"{runs.name}-log"))
    befores = [snapshot(runs) for _, _, _, runs, _ in trials]
    statuses = signalled_trains(trials)
    assert statuses[-1] == REACHED_THE_RUN and len(statuses) > 10, statuses  # every line of the setup was tried
    for (line, signum, _, work, log), before, status in zip(trials, befores, statuses[:-1]):
        where = f"{signal.Signals(signum).name} at line {line} of the setup"
        word = "interrupted" if signum == signal.SIGINT else "terminated"
        stderr = Path(f"{log}.stderr").read_text()
        assert status == 128 + signum and "Traceback" not in stderr, (where, status, stderr)
        assert stderr.splitlines()[-1] == MESSAGE.format(word), (where, stderr)
        assert snapshot(work) == before, where  # truthfully: no staging folder, no new run, nothing else


def aged(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    for part in [*path.rglob("*"), path]:
        os.utime(part, (then, then), follow_symlinks=False)


def test_what_a_kill_at_the_start_leaves_is_swept_by_the_next_run_and_nothing_else(tmp_path):
    """The states a SIGKILL (or a power cut) can leave at a run's start, made as the kill leaves them: the
    staging folder with no owner file yet, with the owner file created but not yet written, or (another
    file system's way) half written. Nothing in them, nothing lost: a later run sweeps them once they
    have been still for a minute. Beside them, what is not provably a dead start is kept."""
    data, runs = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(runs)
    swept = {}
    for tag, owner in (("e0e0e0", None), ("e1e1e1", b""), ("e2e2e2", b'{"pid": 12')):
        folder = runs / f".incomplete-{past_run_id(tag)}"
        folder.mkdir()
        if owner is not None:
            (folder / OWNER_FILE).write_bytes(owner)
        swept[tag] = folder
    kept = {}
    fresh = runs / f".incomplete-{past_run_id('f0f0f0')}"  # could be a run starting this very moment
    fresh.mkdir()
    (fresh / OWNER_FILE).write_bytes(b"")
    kept["fresh"] = fresh
    holding = runs / f".incomplete-{past_run_id('f1f1f1')}"  # the user's file inside: not an empty start
    holding.mkdir()
    (holding / OWNER_FILE).write_bytes(b"")
    (holding / "notes.txt").write_text("mine\n")
    kept["holding"] = holding
    others = runs / f".incomplete-{past_run_id('f2f2f2')}"  # another user's
    others.mkdir()
    kept["others"] = others
    unnamed = runs / ".incomplete-mine"  # not a run id: not the kit's name
    unnamed.mkdir()
    kept["unnamed"] = unnamed
    for folder in (*swept.values(), holding, others, unnamed):
        aged(folder)
    os.chown(others, 65534, 65534)
    before = snapshot(runs)
    result = run_cli("train", "--data", str(data), "--runs", str(runs))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert [tag for tag, folder in swept.items() if folder.exists()] == []
    assert [name for name, folder in kept.items() if not folder.exists()] == []
    after = snapshot(runs)
    assert {k: v for k, v in before.items() if not any(k.startswith(f.name) for f in swept.values())} == \
        {k: v for k, v in after.items() if k in before}  # everything else byte for byte
    new = [k for k in after if k not in before and "/" not in k]
    assert len(new) == 1 and not new[0].startswith(".")  # the new run, published


def test_a_kill_at_any_line_of_a_runs_start_is_swept_by_the_next_run(tmp_path):
    """SIGKILL at every line of the setup, each leaving what it leaves in one runs folder; a minute later
    (the folders' times set back) one run sweeps every trace of them."""
    runs = tmp_path / "runs"
    write_data(tmp_path / "data")
    earlier_run(runs)
    before = snapshot(runs)
    trials = [(line, signal.SIGKILL, tmp_path / "data", runs, tmp_path / f"line{line}-log") for line in range(1, 151)]
    statuses = signalled_trains(trials)
    assert statuses[-1] == REACHED_THE_RUN and set(statuses[:-1]) == {-signal.SIGKILL} and len(statuses) > 5, statuses
    assert list(runs.glob(".incomplete-*")), "no kill left anything to sweep"
    for staging in runs.glob(".incomplete-*"):
        aged(staging)
    done = run_cli("train", "--data", str(tmp_path / "data"), "--runs", str(runs))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    after = snapshot(runs)
    assert [k for k in after if k.startswith(".incomplete-")] == []
    assert {k: v for k, v in after.items() if k in before} == before


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_staging_folder_the_clean_up_cannot_remove_is_named_not_denied(tmp_path):
    """When Ctrl-C's clean-up cannot remove the staging folder (here a file in it made immutable while
    the run was stopped, so that not even root may delete it), the message names the folder left behind
    instead of saying that none was."""
    data, runs = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(runs)
    for attempt in range(5):
        process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", "train", "--data", str(data),
                                    "--runs", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pinned = None
        try:
            deadline = time.monotonic() + 120
            while not list(runs.glob(".incomplete-*")) and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.005)
            process.send_signal(signal.SIGSTOP)
            while process.poll() is None and not stopped(process.pid):
                time.sleep(0.001)
            [staging] = list(runs.glob(".incomplete-*")) or [None]
            if staging is not None:  # stopped before it was published: the clean-up is still to come
                pinned = staging / "pinned"
                pinned.write_text("cannot be removed\n")
                if subprocess.run(["chattr", "+i", str(pinned)], capture_output=True).returncode:
                    pytest.skip("chattr +i needs root and a file system that keeps the flag")
                process.send_signal(signal.SIGINT)
            process.send_signal(signal.SIGCONT)
            stderr = process.communicate(timeout=120)[1]
        finally:
            process.kill()
            if pinned is not None:
                subprocess.run(["chattr", "-i", str(pinned)], capture_output=True)
        if pinned is None:
            continue  # published before it could be stopped: try again
        assert process.returncode == 130 and "Traceback" not in stderr, stderr
        assert stderr.splitlines()[-1] == (f"digit-recognizer: interrupted; the unfinished folder {staging} could not "
                                           f"be removed (delete it by hand); earlier runs are untouched"), stderr
        assert staging.exists()
        return
    pytest.fail("in 5 runs the run was never stopped before it was published")
