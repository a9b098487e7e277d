"""Nothing the kit did not create is ever deleted, and what it did create is swept once its owner is
gone (issue 20, classes 3 and 9): the parse cache folder may be the user's own, and a runs folder may
hold a live run's staging folder or the user's own hidden folders."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import past_run_id, run_cli
from test_bad_input import earlier_run, snapshot
from test_faults import SLOW, slow_train, write_data

OWNER_FILE = ".digit-recognizer-owner"


def dead_pid() -> int:
    """The pid of a process that has just ended (and so, for the test's few seconds, names no process)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid


def start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19].decode()


def test_the_cache_folder_keeps_the_users_own_files_through_train_and_clear(tmp_path):
    cache = tmp_path / "my-arrays"  # the user points the cache at a folder of their own .npy files
    cache.mkdir()
    np.save(cache / "features.npy", np.arange(10))
    np.save(cache / "0123456789abcdef-0123456789ab.npy", np.arange(3))  # an older kit's name, another user's file
    (cache / ".draft.tmp").write_text("an hour of my notes\n")
    (cache / ".abcdef0123456789-0123456789ab.entry.1-abcdef.tmp").write_text("kit-like, but pid 1 is alive\n")
    hour_ago = time.time() - 3600
    for path in cache.iterdir():
        os.utime(path, (hour_ago, hour_ago))
    os.chown(cache / "0123456789abcdef-0123456789ab.npy", 12345, 12345)  # another user's: never ours to remove
    mine = snapshot(cache)
    env = {"DIGIT_RECOGNIZER_CACHE": str(cache)}
    data = write_data(tmp_path / "data")
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "runs"), env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    after = snapshot(cache)
    assert {k: v for k, v in after.items() if k in mine} == mine  # every file of the user's, byte for byte
    assert len([k for k in after if k.endswith(".entry")]) == 2  # and the kit's two entries beside them
    cleared = run_cli("cache", "--clear", env=env)
    assert cleared.returncode == 0 and cleared.stderr == "", cleared.stderr
    assert cleared.stdout.startswith("removed 2 entries") and "4 other file(s)" in cleared.stdout, cleared.stdout
    assert snapshot(cache) == mine


def test_train_sweeps_only_staging_folders_whose_owner_is_gone(tmp_path):
    data, runs = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(runs)
    killed = runs / f".incomplete-{past_run_id('dead00')}"  # a run killed by SIGKILL or SIGUSR1
    live = runs / f".incomplete-{past_run_id('11fe00')}"  # a run still writing (this test process)
    users = runs / f".incomplete-{past_run_id('0e0000')}"  # the user's own, no owner file: not provably ours
    for folder, owner in ((killed, {"pid": dead_pid(), "started": "1", "host": os.uname().nodename}),
                          (live, {"pid": os.getpid(), "started": start_time(os.getpid()), "host": os.uname().nodename}),
                          (users, None)):
        folder.mkdir()
        (folder / "submission.csv").write_text("ImageId,Label\n")
        if owner:
            (folder / OWNER_FILE).write_text(json.dumps(owner))
    before = snapshot(runs)
    result = run_cli("train", "--data", str(data), "--out", str(runs))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    after = snapshot(runs)
    assert not killed.exists()
    assert {k: v for k, v in before.items() if not k.startswith(killed.name)} == \
        {k: v for k, v in after.items() if k in before}
    new = [k for k in after if k not in before and "/" not in k]
    assert len(new) == 1 and not new[0].startswith(".")  # the new run, published; no staging of its own left


def test_sighup_mid_train_is_one_line_and_leaves_nothing_behind(tmp_path):
    data, runs = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(runs)
    before = snapshot(tmp_path)
    process = slow_train(None, runs, *SLOW)
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob(".incomplete-*")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        assert list(runs.glob(".incomplete-*")), "the run never started writing"
        process.send_signal(signal.SIGHUP)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGHUP and "Traceback" not in stderr, (process.returncode, stderr)
    messages = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("digit-recognizer")]
    assert messages == ["digit-recognizer: terminated; no run folder was left behind and earlier runs are untouched"]
    assert snapshot(tmp_path) == before


def test_an_append_only_runs_folder_is_refused_before_training(tmp_path):
    data, runs = write_data(tmp_path / "data"), tmp_path / "runs"
    earlier_run(runs)
    if os.geteuid() != 0 or subprocess.run(["chattr", "+a", str(runs)], capture_output=True, timeout=60).returncode:
        pytest.skip("chattr +a needs root and a file system that keeps the flag")
    try:
        before = snapshot(tmp_path)
        result = run_cli("train", "--data", str(data), "--out", str(runs), timeout=120)
        after = snapshot(tmp_path)
    finally:
        subprocess.run(["chattr", "-a", str(runs)], capture_output=True, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "append-only" in lines[0] and str(runs) in lines[0]
    assert after == before  # no staging folder that could never be removed
