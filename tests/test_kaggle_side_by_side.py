"""Writers side by side lose nothing (issue 28, class 2): several `submit`s, `kernels push`es or
`download`s at once, real processes against the fake Kaggle, whose answers are held until every one
of them has asked, so that their record writes overlap as closely as they can.
"""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import past_run_id
from kaggle_fixtures import SAMPLE, kaggle, project, sample, user_env  # noqa: F401

RECORDS = "kaggle_submissions.json"
WAIT = 120  # seconds: six processes importing the kaggle client on two loaded cores


def start(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    # A generous deadline on each Kaggle call: the held answer waits for the slowest process to ask.
    env = {**os.environ, **env, "DIGIT_RECOGNIZER_KAGGLE_TIMEOUT": str(WAIT)}
    return subprocess.Popen([sys.executable, "-m", "digit_recognizer", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def all_at_once(kaggle, method: str, commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run the commands together; Kaggle answers `method` only once every one of them has called it."""
    answer = kaggle.held[method] = threading.Event()
    processes = [start(args, kaggle.env, cwd) for args in commands]
    try:
        deadline = time.monotonic() + WAIT
        while len(kaggle.calls(method)) < len(commands) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                break  # one ended early: its output says why
            time.sleep(0.05)
        answer.set()
        results = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=WAIT)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        answer.set()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    for result in results:
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert len(kaggle.calls(method)) == len(commands)
    return results


def test_six_submits_at_once_record_all_six(tmp_path, kaggle):
    run = tmp_path / "submissions" / past_run_id("aaaaaa")
    run.mkdir(parents=True)
    (run / "submission.csv").write_bytes(sample("solution"))
    (run / "metrics.json").write_text(json.dumps({"val_accuracy": 0.9125, "config": {"seed": 0}}))
    results = all_at_once(kaggle, "CreateSubmission", [["submit", "--data", str(SAMPLE)]] * 6, tmp_path)
    assert all("recorded in" in r.stdout for r in results)
    records = json.loads((run / RECORDS).read_text())
    assert sorted(r["ref"] for r in records) == [1001, 1002, 1003, 1004, 1005, 1006]
    assert sorted(p.name for p in run.iterdir()) == ["kaggle_submissions.json", "metrics.json", "submission.csv"]


def test_six_pushes_at_once_record_every_version(kaggle, project):
    # A long history (of another kernel) makes each read-modify-write take long enough to overlap.
    history = [{"kernel": "alice/an-older-kernel", "version": v, "pushed_at": "2020-01-01T00:00:00+00:00",
                "code_sha256": f"{v:064x}", "options": {}, "no_run": False} for v in range(1, 5001)]
    (project / "kernel-pushes.json").write_text(json.dumps(history, indent=2))
    all_at_once(kaggle, "SaveKernel", [["kernels", "push", "--no-run"]] * 6, project)
    pushes = json.loads((project / "kernel-pushes.json").read_text())
    assert pushes[:len(history)] == history
    assert sorted(p["version"] for p in pushes[len(history):]) == [1, 2, 3, 4, 5, 6]
    assert json.loads((project / "kernel-metadata.json").read_text())["id"] == "alice/digit-recognizer-logistic-regression"


def test_two_downloads_at_once_keep_the_users_earlier_train_csv(tmp_path, kaggle):
    kaggle.set_competition_zip({"train.csv": sample("train"), "test.csv": sample("test")})
    for attempt in range(3):  # a kept name per second collides only when both finish in one second
        data = tmp_path / f"data-{attempt}"
        data.mkdir()
        mine = b"label,pixel0\n7,0\n# the user's own train.csv, attempt %d\n" % attempt
        (data / "train.csv").write_bytes(mine)
        kaggle.requests.clear()
        results = all_at_once(kaggle, "DownloadDataFiles", [["download", "--to", data.name]] * 2, tmp_path)
        contents = {p.name: p.read_bytes() for p in data.iterdir()}
        assert mine in contents.values(), sorted(contents)  # kept under some name, whatever the timing
        kept = [name for name, raw in contents.items() if raw == mine]
        assert all(name.startswith("train.csv.before-download-") for name in kept)
        said = [line for r in results for line in r.stdout.splitlines() if line.startswith("kept the earlier")]
        assert any(name in line for name in kept for line in said), said  # and the name said is where it is
        assert contents["train.csv"] == sample("train") and contents["test.csv"] == sample("test")
