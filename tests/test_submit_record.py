"""A submission Kaggle accepted is always recorded (issue 20, class 1), through the real kaggle client
against the fake Kaggle, with the real file systems the cases need (a read-only bind mount, a full tmpfs).

Each case asserts the exit code, exactly one line on stderr, no traceback, and that every file that
existed before is byte-identical afterwards (or, for a damaged record, kept under a new name).
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import ROOT, past_run_id
from kaggle_fixtures import SAMPLE, kaggle, project, run, sample, user_env  # noqa: F401
from test_faults import fill, read_only, small_tmpfs

RUN = past_run_id("aaaaaa")
RECORDS = "kaggle_submissions.json"


def make_run(runs: Path) -> Path:
    folder = runs / RUN
    folder.mkdir(parents=True)
    (folder / "submission.csv").write_bytes(sample("solution"))
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.9125, "config": {"seed": 0}}))
    return folder


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def the_line(result, code: int) -> str:
    """Exactly one non-progress line on stderr, no traceback, the given exit code."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("submission: ")]
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    return lines[0]


def records(folder: Path) -> list[dict]:
    return json.loads((folder / RECORDS).read_text())


def test_a_damaged_record_file_is_kept_aside_and_the_submission_recorded(tmp_path, kaggle):
    folder = make_run(tmp_path / "submissions")
    (folder / RECORDS).write_bytes(b'[{"ref": 7, "status": "comp')  # cut short by a crash
    before = hashes(tmp_path / "submissions")
    result = run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path)
    line = the_line(result, 0)
    assert "warning" in line and "kept as" in line
    (record,) = records(folder)
    assert record["ref"] == 1001 and len(kaggle.calls("CreateSubmission")) == 1
    after = hashes(tmp_path / "submissions")
    aside = [name for name in after if name.startswith(f"{RUN}/{RECORDS}.damaged-")]
    assert len(aside) == 1 and after[aside[0]] == before[f"{RUN}/{RECORDS}"]  # the damaged bytes, untouched
    assert all(after[name] == digest for name, digest in before.items() if not name.endswith(RECORDS))


def test_a_read_only_run_folder_is_refused_before_anything_is_uploaded(tmp_path, kaggle):
    folder = make_run(tmp_path / "submissions")
    before = hashes(tmp_path)
    with read_only(folder):
        result = run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path)
    line = the_line(result, 2)
    assert "cannot keep the submission record there" in line and "nothing was uploaded" in line
    assert not kaggle.calls("StartSubmissionUpload") and not kaggle.calls("CreateSubmission")
    assert hashes(tmp_path) == before


def test_a_record_file_that_is_a_folder_is_refused_before_uploading(tmp_path, kaggle):
    folder = make_run(tmp_path / "submissions")
    (folder / RECORDS).mkdir()
    before = hashes(tmp_path)
    line = the_line(run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path), 2)
    assert RECORDS in line and "nothing was uploaded" in line
    assert not kaggle.calls("StartSubmissionUpload") and hashes(tmp_path) == before


def test_ctrl_c_while_kaggles_answer_is_in_flight_still_records_it(tmp_path, kaggle):
    folder = make_run(tmp_path / "submissions")
    before = hashes(tmp_path / "submissions")
    answer = kaggle.held["CreateSubmission"] = threading.Event()  # Kaggle has made the submission; no answer yet
    process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", "submit", "--data", str(SAMPLE)],
                               cwd=tmp_path, env={**os.environ, **kaggle.env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not kaggle.calls("CreateSubmission") and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert kaggle.calls("CreateSubmission"), "the upload never reached CreateSubmission"
        process.send_signal(signal.SIGINT)  # while the answer is held: provably in flight
        answer.set()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    line = the_line(result, 130)
    assert "interrupted" in line and "Kaggle has the submission (ref 1001)" in line and RECORDS in line
    (record,) = records(folder)
    assert record["ref"] == 1001
    after = hashes(tmp_path / "submissions")
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_nan_poll_interval_is_refused_before_uploading(tmp_path, kaggle):
    make_run(tmp_path / "submissions")
    before = hashes(tmp_path)
    for env, flags in (({"DIGIT_RECOGNIZER_POLL_SECONDS": "nan"}, ()), ({}, ("--wait-timeout", "nan"))):
        result = run("submit", "--data", str(SAMPLE), "--wait", *flags, env={**kaggle.env, **env}, cwd=tmp_path)
        line = the_line(result, 2)
        assert "nan" in line.lower() and "expected" in line
    assert not kaggle.calls("StartSubmissionUpload") and hashes(tmp_path) == before


def test_a_401_after_kaggle_said_yes_says_it_has_the_submission_and_where_the_record_is(tmp_path, kaggle):
    folder = make_run(tmp_path / "submissions")
    kaggle.unauthorized = {"ListSubmissions"}  # the key stops working between the upload and the wait
    result = run("submit", "--data", str(SAMPLE), "--wait", env=kaggle.env, cwd=tmp_path)
    line = the_line(result, 2)
    assert "401" in line and "Kaggle has the submission (ref 1001)" in line
    assert f"recorded in submissions/{RUN}/{RECORDS}" in line and "do not submit it again" in line
    assert records(folder)[0]["ref"] == 1001


def test_a_disk_that_fills_after_the_check_sends_the_record_to_the_fallback_file(tmp_path, kaggle):
    with ExitStack() as mounts:
        disk = mounts.enter_context(small_tmpfs(tmp_path / "disk", "64k"))
        folder = make_run(disk / "submissions")
        fill(disk)  # room for an empty probe file (no blocks), none for the record
        before = hashes(disk / "submissions")
        result = run("submit", "--runs", str(disk / "submissions"), "--data", str(SAMPLE), env=kaggle.env,
                     cwd=tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert hashes(disk / "submissions") == before
        assert not (folder / RECORDS).exists()
    fallback = Path(kaggle.env["HOME"]) / ".local" / "state" / "digit-recognizer" / "unfiled_kaggle_submissions.json"
    (record,) = json.loads(fallback.read_text())
    assert record["ref"] == 1001 and record["run"] == str(folder)
    assert f"recorded in {fallback} (not the run folder" in result.stdout


def test_submit_kernel_keeps_a_damaged_record_aside_and_records_the_code_submission(kaggle, project):
    kaggle.kernel_statuses = ["COMPLETE"]
    kaggle.output_files = {"submission.csv": sample("solution")}
    for args in (("kernels", "push"), ("kernels", "output")):
        assert run(*args, env=kaggle.env, cwd=project).returncode == 0
    (folder,) = (project / "submissions").iterdir()
    (folder / RECORDS).write_bytes(b"[{]")
    before = hashes(folder)
    result = run("submit", "--kernel", "--data", str(SAMPLE), env=kaggle.env, cwd=project)
    line = the_line(result, 0)
    assert "warning" in line and "kept as" in line
    (record,) = records(folder)
    assert record["ref"] == 1001 and record["via"] == "code submission" and kaggle.calls("CreateCodeSubmission")
    after = hashes(folder)
    (aside,) = [name for name in after if name.startswith(f"{RECORDS}.damaged-")]
    assert after[aside] == before[RECORDS]
    assert all(after[name] == digest for name, digest in before.items() if name != RECORDS)
