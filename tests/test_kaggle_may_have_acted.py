"""When Kaggle may have acted, the kit says so and records it (issue 28, class 3): Ctrl-C while a push's
answer is in flight, no answer at all, a 502 or a truncated answer after Kaggle made the submission or
the version. Each keeps a pending record (never silence), says how to check, and the next listing
(`submissions`, `kernels status`) or push settles the record either way.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import past_run_id
from kaggle_fixtures import KERNEL, SAMPLE, kaggle, project, run, sample, submitted_column, user_env  # noqa: F401
from test_submit_record import the_line

RECORDS = "kaggle_submissions.json"


def make_run(tmp_path):
    folder = tmp_path / "submissions" / past_run_id("aaaaaa")
    folder.mkdir(parents=True)
    (folder / "submission.csv").write_bytes(sample("solution"))
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.9125, "config": {"seed": 0}}))
    return folder


def pushes(project) -> list[dict]:
    return json.loads((project / "kernel-pushes.json").read_text())


def interrupted_push(kaggle, project, env: dict | None = None, answer_after: float | None = None):
    """`kernels push` sent Ctrl-C once SaveKernel has reached Kaggle (which has made the version), while
    the answer is held; the answer is let go `answer_after` seconds later (None: only at the end)."""
    answer = kaggle.held["SaveKernel"] = threading.Event()
    process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", "kernels", "push"], cwd=project,
                               env={**os.environ, **kaggle.env, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not kaggle.calls("SaveKernel") and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert kaggle.calls("SaveKernel"), process.communicate(timeout=30)
        process.send_signal(signal.SIGINT)
        if answer_after is not None:
            time.sleep(answer_after)
            answer.set()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        answer.set()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_ctrl_c_while_a_pushs_answer_is_in_flight_records_the_version_kaggle_made(kaggle, project):
    result = interrupted_push(kaggle, project, answer_after=0.5)
    line = the_line(result, 130)
    assert line.startswith("digit-recognizer: interrupted; Kaggle made alice/digit-recognizer-logistic-regression "
                           "version 1, recorded in kernel-pushes.json"), line
    (entry,) = pushes(project)
    assert entry["version"] == 1 and not entry.get("pending")


def test_ctrl_c_and_no_answer_keeps_a_pending_push_that_kernels_status_settles(kaggle, project):
    kaggle.kernel_statuses = ["COMPLETE"]  # what the version made by the push will answer
    result = interrupted_push(kaggle, project, env={"DIGIT_RECOGNIZER_KAGGLE_TIMEOUT": "3"})
    line = the_line(result, 130)
    assert "interrupted; Kaggle may have made a new version of alice/digit-recognizer-logistic-regression" in line
    assert "kernels status" in line and "pending" in line
    (entry,) = pushes(project)
    assert entry["pending"] is True and entry["version"] is None and entry["after_version"] == 0
    status = run("kernels", "status", env=kaggle.env, cwd=project)
    assert status.returncode == 0, status.stderr
    assert "whose answer was lost, made alice/digit-recognizer-logistic-regression version 1" in status.stderr
    assert "version 1: COMPLETE" in status.stdout
    (entry,) = pushes(project)
    assert entry["version"] == 1 and entry["pending"] is False


@pytest.mark.parametrize("misbehaviour", ["bad_gateway", "truncated"])
def test_a_push_answered_by_a_502_or_cut_short_is_pending_and_the_next_push_settles_it(kaggle, project,
                                                                                       misbehaviour):
    setattr(kaggle, misbehaviour, {"SaveKernel"})  # Kaggle made version 1; its answer is lost
    line = the_line(run("kernels", "push", env=kaggle.env, cwd=project), 2)
    said = {"bad_gateway": "HTTP 502: not JSON: <html>", "truncated": "not readable JSON (HTTP 200"}[misbehaviour]
    assert said in line and "Kaggle may have made a new version" in line and "kernels status" in line
    assert "Unterminated" not in line and "line 1 column" not in line
    (entry,) = pushes(project)
    assert entry["pending"] is True
    setattr(kaggle, misbehaviour, set())
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "made version 1; recorded" in result.stdout and "version 2 pushed" in result.stdout
    assert [(p["version"], p.get("pending")) for p in pushes(project)] == [(1, False), (2, None)]


def test_a_push_kaggle_never_made_is_removed_by_the_next_push(kaggle, project):
    kaggle.failing = {"SaveKernel"}  # a 500 before any version is made: the kit cannot tell
    line = the_line(run("kernels", "push", env=kaggle.env, cwd=project), 2)
    assert "HTTP 500" in line and "Kaggle may have made a new version" in line
    kaggle.failing = set()
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    assert result.returncode == 0 and "made no version" in result.stdout, result.stderr
    assert [p["version"] for p in pushes(project)] == [1]


@pytest.mark.parametrize("misbehaviour", ["bad_gateway", "truncated"])
def test_a_submission_answered_by_a_502_or_cut_short_is_unconfirmed_until_submissions_finds_it(
        tmp_path, kaggle, misbehaviour):
    folder = make_run(tmp_path)
    setattr(kaggle, misbehaviour, {"CreateSubmission"})  # Kaggle has the submission; its answer is lost
    line = the_line(run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path), 2)
    assert "Kaggle may have taken the submission" in line and "submissions' before submitting again" in line
    assert "unconfirmed record is kept in" in line and RECORDS in line
    assert "Unterminated" not in line and "upload failed" not in line
    (record,) = json.loads((folder / RECORDS).read_text())
    assert record["status"] == "unconfirmed" and record["ref"] is None
    setattr(kaggle, misbehaviour, set())
    listed = run("submissions", env=kaggle.env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "whose answer was lost, is on Kaggle (ref 1001); its record is confirmed" in listed.stdout
    (record,) = json.loads((folder / RECORDS).read_text())
    assert record["ref"] == 1001 and record["status"] in ("pending", "complete")
    assert folder.name in [row for row in listed.stdout.splitlines() if "1001" in row or "pending" in row][0]


def test_a_submission_kaggle_never_received_is_removed_by_the_next_listing(tmp_path, kaggle):
    folder = make_run(tmp_path)
    kaggle.failing = {"CreateSubmission"}  # a 500 before the submission is made
    line = the_line(run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path), 2)
    assert "HTTP 500" in line and "Kaggle may have taken the submission" in line
    (record,) = json.loads((folder / RECORDS).read_text())
    assert record["status"] == "unconfirmed"
    kaggle.failing = set()
    listed = run("submissions", env=kaggle.env, cwd=tmp_path)  # at once: Kaggle's list may not show it yet
    assert listed.returncode == 0 and "is not in Kaggle's list yet" in listed.stdout, listed.stderr
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)  # the same listing, an hour later
    (folder / RECORDS).write_text(json.dumps([{**record, "submitted_at": an_hour_ago.isoformat(timespec="seconds")}]))
    listed = run("submissions", env=kaggle.env, cwd=tmp_path)
    assert listed.returncode == 0 and "never reached Kaggle" in listed.stdout, listed.stderr
    assert json.loads((folder / RECORDS).read_text()) == []
    runs = run("runs", env=kaggle.env, cwd=tmp_path)
    assert submitted_column(runs.stdout, folder.name) == ("no", "-")  # `runs` no longer counts it as submitted


def test_a_code_submission_answered_by_a_502_is_unconfirmed_until_submissions_finds_it(tmp_path, kaggle):
    kaggle.add_version(1, ["COMPLETE"], {"submission.csv": sample("solution")})
    kaggle.bad_gateway = {"CreateCodeSubmission"}  # Kaggle has the submission; its answer is lost
    result = run("submit", "--kernel", KERNEL, "--version", "1", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path)
    line = the_line(result, 2)
    assert "HTTP 502" in line and "Kaggle may have taken the submission" in line and "refused" not in line
    (folder,) = (tmp_path / "submissions").iterdir()
    (record,) = json.loads((folder / RECORDS).read_text())
    assert record["status"] == "unconfirmed" and record["via"] == "code submission"
    kaggle.bad_gateway = set()
    listed = run("submissions", env=kaggle.env, cwd=tmp_path)
    assert listed.returncode == 0 and "is on Kaggle (ref 1001)" in listed.stdout, listed.stderr
    assert json.loads((folder / RECORDS).read_text())[0]["ref"] == 1001
