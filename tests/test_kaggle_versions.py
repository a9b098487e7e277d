"""Kernel versions end to end, the kernel's log, code submissions and the leaderboard, against the fake
Kaggle through the real kaggle client (issues 14 and 15)."""
import json
from pathlib import Path

from conftest import past_run_id
from fake_kaggle import FAKE_USER, midnight
from kaggle_fixtures import KERNEL, SAMPLE, kaggle, one_error_line, project, run, sample, user_env  # noqa: F401

SLUG = KERNEL.split("/")[1]


def other_labels() -> bytes:
    """A valid submission that differs from the sample solution in every row."""
    lines = sample("solution").decode().splitlines()
    return ("\n".join([lines[0]] + [f"{row.split(',')[0]},{(int(row.split(',')[1]) + 1) % 10}" for row in lines[1:]])
            + "\n").encode()


def versions_asked(kaggle, method: str) -> list:
    return [r.json().get("versionLabel") for r in kaggle.calls(method)]


def run_folder_of(result, cwd: Path) -> Path:
    return cwd / result.stdout.split("run folder: ")[1].split(" (")[0]


def test_kernels_run_waits_for_the_new_version_not_the_finished_older_one(kaggle, project):
    """Issue 15's stale session: Kaggle's latest session is still version 6 (COMPLETE) right after the
    push that made version 7; the loop asks for v7 by name, waits for it, and fetches v7's output."""
    kaggle.add_version(6, ["COMPLETE"], {"submission.csv": other_labels()}, ["old run", "validation accuracy: 0.8000"])
    kaggle.latest_session = 6
    kaggle.kernel_statuses = ["RUNNING", "RUNNING", "COMPLETE"]
    kaggle.output_files = {"submission.csv": sample("solution"),
                           "metrics.json": json.dumps({"val_accuracy": 0.9231}).encode()}
    result = run("kernels", "run", "--data", str(SAMPLE), env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert kaggle.api_calls()[:2] == ["GetAcceleratorQuotaStatistics", "SaveKernel"]
    assert set(versions_asked(kaggle, "GetKernelSessionStatus")) == {"v7"}
    assert len(kaggle.calls("GetKernelSessionStatus")) == 3  # RUNNING, RUNNING, COMPLETE: it waited
    assert versions_asked(kaggle, "ListKernelSessionOutput") == ["v7"]
    fetched = sorted(r.path for r in kaggle.requests if r.path.startswith("/blob/"))
    assert fetched == ["/blob/v7/metrics.json", "/blob/v7/submission.csv"]
    folder = run_folder_of(result, project)
    assert (folder / "submission.csv").read_bytes() == sample("solution")  # version 7's, not 6's
    origin = json.loads((folder / "origin.json").read_text())
    assert origin["kernel"] == KERNEL and origin["version"] == 7 and origin["status"] == "COMPLETE"
    (push,) = json.loads((project / "kernel-pushes.json").read_text())
    assert push["version"] == 7 and push["kernel"] == KERNEL and origin["push"]["code_sha256"] == push["code_sha256"]
    assert "version 7" in result.stdout and "validation accuracy (reported by the kernel): 0.9231" in result.stdout
    assert "valid: 1000 rows" in result.stdout


def test_kernels_run_on_error_prints_the_versions_log_tail_and_fails(kaggle, project):
    kaggle.next_version = 3
    kaggle.kernel_statuses = ["RUNNING", "ERROR"]
    kaggle.failure_message = "Your notebook tried to allocate more memory than is available."
    kaggle.new_version_log = [f"epoch {i}" for i in range(30)] + ["RuntimeError: CUDA out of memory"]
    result = run("kernels", "run", env=kaggle.env, cwd=project)
    assert result.returncode == 1, result.stderr
    assert "version 3: ERROR (Your notebook tried to allocate" in result.stdout
    tail = result.stdout.split("last 20 lines of the log of")[1].splitlines()
    assert tail[-1].strip() == "RuntimeError: CUDA out of memory" and "epoch 11" in tail[1]
    assert versions_asked(kaggle, "ListKernelSessionOutput") == ["v3"]  # the log, no output fetched
    assert not (project / "submissions").exists()


def test_push_passes_timeout_and_no_run_and_skips_the_quota_for_a_save(kaggle, project):
    result = run("kernels", "push", "--time-limit", "600", "--no-run", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    (push,) = kaggle.calls("SaveKernel")
    assert push.json()["sessionTimeoutSeconds"] == 600 and push.json()["kernelExecutionType"] == "QUICK_SAVE"
    assert kaggle.api_calls() == ["SaveKernel"]  # a save runs nothing, so no GPU quota is read
    assert "saved (not run)" in result.stdout
    (record,) = json.loads((project / "kernel-pushes.json").read_text())
    assert record["version"] == 1 and record["timeout_seconds"] == 600 and record["no_run"] is True
    # A saved version has no run: status stays about the last version that ran.
    kaggle.add_version(1, ["COMPLETE"])  # what an earlier push from elsewhere made (the save became 2)
    saved = {**record, "version": 2}
    ran = {**record, "version": 1, "no_run": False}
    (project / "kernel-pushes.json").write_text(json.dumps([ran, saved]))
    result = run("kernels", "status", env=kaggle.env, cwd=project)
    assert "version 1: COMPLETE" in result.stdout and versions_asked(kaggle, "GetKernelSessionStatus") == ["v1"]


def test_no_gpu_quota_left_stops_the_push_before_savekernel(kaggle, project):
    refresh = midnight(days_from_today=4)
    kaggle.quota = {"quotaRefreshTime": f"{refresh:%Y-%m-%dT%H:%M:%SZ}",
                    "gpuQuota": {"timeUsed": "108000s", "totalTimeAllowed": "108000s"}}
    line = one_error_line(run("kernels", "push", env=kaggle.env, cwd=project))
    assert "no GPU quota left" in line and f"{refresh:%Y-%m-%d} 00:00 UTC" in line and "--ignore-quota" in line
    assert kaggle.api_calls() == ["GetAcceleratorQuotaStatistics"]
    assert not (project / "kernel-pushes.json").exists()

    result = run("kernels", "push", "--ignore-quota", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert kaggle.api_calls()[-2:] == ["GetAcceleratorQuotaStatistics", "SaveKernel"]


def test_a_failing_quota_call_does_not_stop_the_push(kaggle, project):
    kaggle.failing = {"GetAcceleratorQuotaStatistics"}
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "GPU quota: unknown" in result.stdout
    assert kaggle.api_calls()[-1] == "SaveKernel"


def test_quota_left_is_printed(kaggle, project):
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    refresh = kaggle.quota["quotaRefreshTime"]  # the fake's default: six days from today, at midnight
    assert f"GPU quota: 20.0 of 30.0 h left this week (refreshes {refresh[:10]} 00:00 UTC)" in result.stdout


def test_status_output_and_logs_default_to_the_pushed_version_and_take_another(kaggle, project):
    kaggle.add_version(6, ["COMPLETE"], {"submission.csv": other_labels()}, ["version six says hello"])
    kaggle.latest_session = 6
    kaggle.kernel_statuses = ["COMPLETE"]
    kaggle.new_version_log = ["epoch 1/2", "epoch 2/2", "validation accuracy: 0.9231"]
    assert run("kernels", "push", env=kaggle.env, cwd=project).returncode == 0
    status = run("kernels", "status", env=kaggle.env, cwd=project)
    assert status.returncode == 0 and f"{KERNEL} version 7: COMPLETE" in status.stdout
    logs = run("kernels", "logs", env=kaggle.env, cwd=project)
    assert logs.returncode == 0 and logs.stdout == "epoch 1/2\nepoch 2/2\nvalidation accuracy: 0.9231\n"
    assert "log of alice/digit-recognizer-logistic-regression version 7" in logs.stderr
    older = run("kernels", "logs", "--version", "6", env=kaggle.env, cwd=project)
    assert older.stdout == "version six says hello\n"
    follow = run("kernels", "logs", "--follow", env=kaggle.env, cwd=project)
    assert follow.returncode == 0 and follow.stdout == logs.stdout
    (stream,) = [r for r in kaggle.requests if "/logs/stream/" in r.path]
    assert stream.path == f"/api/v1/kernels/logs/stream/{FAKE_USER}/{SLUG}" and stream.query == {"versionLabel": ["v7"]}
    output = run("kernels", "output", "--version", "6", env=kaggle.env, cwd=project)
    assert output.returncode == 0 and "version 6" in output.stdout
    assert (run_folder_of(output, project) / "submission.csv").read_bytes() == other_labels()
    assert versions_asked(kaggle, "GetKernelSessionStatus") == ["v7", "v6"]
    assert versions_asked(kaggle, "ListKernelSessionOutput") == ["v7", "v6", "v6"]


def test_logs_follow_is_bounded_in_time(kaggle, project):
    kaggle.kernel_statuses = ["RUNNING"]
    kaggle.stream_delay = 5.0
    assert run("kernels", "push", env=kaggle.env, cwd=project).returncode == 0
    result = run("kernels", "logs", "--follow", "--wait-timeout", "0.5", env=kaggle.env, cwd=project)
    assert result.returncode == 2 and "still streaming after 0.5 s" in result.stderr
    assert "kernels logs --follow --version 1" in result.stderr


def test_status_error_prints_the_log_tail(kaggle, project):
    kaggle.kernel_statuses = ["ERROR"]
    kaggle.new_version_log = ["loading data", "ValueError: train.csv not found"]
    assert run("kernels", "push", env=kaggle.env, cwd=project).returncode == 0
    result = run("kernels", "status", env=kaggle.env, cwd=project)
    assert result.returncode == 1 and "version 1: ERROR" in result.stdout
    assert result.stdout.rstrip().endswith("ValueError: train.csv not found")


def test_push_status_logs_submit_from_the_kernel_then_submissions_with_score_and_rank(kaggle, project):
    """Issue 14's acceptance: the whole loop from the terminal, tied to the local run of that version."""
    kaggle.hold_until_streamed = True
    kaggle.kernel_statuses = ["RUNNING", "COMPLETE"]
    kaggle.output_files = {"submission.csv": sample("solution"), "metrics.json": b'{"val_accuracy": 0.9231}'}
    kaggle.new_version_log = ["data: /kaggle/input (42000 train)", "epoch 10/10", "validation accuracy: 0.9231"]
    kaggle.leaderboard = [{"teamId": 1, "teamName": "Top", "score": "1.00000"},
                          {"teamId": 2, "teamName": "Second", "score": "0.99500"},
                          {"teamId": 3, "teamName": "Third", "score": "0.95000"},
                          {"teamId": 9, "teamName": "Alice", "score": "0.91234", "members": FAKE_USER},
                          {"teamId": 4, "teamName": "Last", "score": "0.90000"}]

    def step(*args: str):
        result = run(*args, env=kaggle.env, cwd=project)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result

    step("kernels", "push")
    waited = step("kernels", "status", "--wait")
    assert "log: validation accuracy: 0.9231" in waited.stderr  # the live last log line while RUNNING
    assert f"{KERNEL} version 1: COMPLETE" in waited.stdout
    assert step("kernels", "logs").stdout.splitlines()[-1] == "validation accuracy: 0.9231"
    kaggle.score_after = 0
    submitted = step("submit", "--kernel", "--data", str(SAMPLE), "--wait")
    assert "public score: 0.91234" in submitted.stdout
    (code,) = kaggle.calls("CreateCodeSubmission")
    body = code.json()
    assert {k: body[k] for k in ("competitionName", "kernelOwner", "kernelSlug", "kernelVersion", "fileName")} == {
        "competitionName": "digit-recognizer", "kernelOwner": FAKE_USER, "kernelSlug": SLUG, "kernelVersion": 1,
        "fileName": "submission.csv"}
    assert not kaggle.calls("StartSubmissionUpload")  # nothing uploaded again
    fetched = [r.path for r in kaggle.requests if r.path.startswith("/blob/")]
    assert fetched == ["/blob/v1/submission.csv"]  # just that file
    (run_dir,) = (project / "submissions").iterdir()
    assert json.loads((run_dir / "origin.json").read_text())["version"] == 1
    (record,) = json.loads((run_dir / "kaggle_submissions.json").read_text())
    assert record["kernel_version"] == 1 and record["status"] == "complete" and f"run {run_dir.name}" in body["submissionDescription"]

    listing = step("submissions")
    row = next(line for line in listing.stdout.splitlines() if run_dir.name in line)
    assert "0.91234" in row and "  4  " in row and "v1" in row
    assert "5 teams" in listing.stdout
    board = step("leaderboard")
    assert "Top" in board.stdout and "Second" in board.stdout
    assert f"you ({FAKE_USER}): best public score 0.91234, rank 4 of 5 teams" in board.stdout
    assert kaggle.calls("GetLeaderboard")[0].json()["pageSize"] == 5


def test_a_kernel_versions_invalid_submission_never_reaches_kaggle(kaggle, project):
    kaggle.kernel_statuses = ["COMPLETE"]
    kaggle.output_files = {"submission.csv": sample("solution").replace(b"\n7,", b"\n7,7,", 1)}
    assert run("kernels", "push", env=kaggle.env, cwd=project).returncode == 0
    result = run("submit", "--kernel", "--data", str(SAMPLE), env=kaggle.env, cwd=project)
    assert result.returncode == 2 and "not uploaded" in result.stderr and "line 8: has 3 fields" in result.stderr
    assert not kaggle.calls("CreateCodeSubmission") and not kaggle.calls("GetSubmissionLimits")
    assert not (project / "submissions").exists()


def test_a_refused_code_submission_names_the_download_then_submit_route(kaggle, project):
    kaggle.kernel_statuses = ["COMPLETE"]
    kaggle.output_files = {"submission.csv": sample("solution")}
    kaggle.code_submission_refusal = "This competition does not accept code submissions"
    assert run("kernels", "push", env=kaggle.env, cwd=project).returncode == 0
    line = one_error_line(run("submit", "--kernel", "--data", str(SAMPLE), env=kaggle.env, cwd=project))
    (run_dir,) = (project / "submissions").iterdir()
    assert "refused a code submission" in line and "does not accept code submissions" in line
    assert line.endswith(f"-m digit_recognizer submit {Path('submissions') / run_dir.name}")  # as this process was run
    result = run("submit", str(Path("submissions") / run_dir.name), "--data", str(SAMPLE), env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert kaggle.calls("tok1")[0].body == sample("solution")


def test_submit_kernel_refuses_a_version_still_running(kaggle, project):
    kaggle.kernel_statuses = ["RUNNING"]
    assert run("kernels", "push", env=kaggle.env, cwd=project).returncode == 0
    line = one_error_line(run("submit", "--kernel", env=kaggle.env, cwd=project))
    assert "version 1 is RUNNING" in line and "status --wait --version 1" in line
    assert not kaggle.calls("ListKernelSessionOutput")


def test_submissions_show_cv_beside_the_public_score_and_sum_up_the_gap(kaggle, tmp_path):
    runs = tmp_path / "submissions"
    for name, cv in ((past_run_id("aaaaaa"), 0.9000), (past_run_id("bbbbbb", days=1), 0.9200)):
        folder = runs / name
        folder.mkdir(parents=True)
        (folder / "submission.csv").write_bytes(sample("solution"))
        metrics = {"val_accuracy": 0.91, "cv": {"folds": 5, "accuracy": cv, "stderr": 0.002}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        assert run("submit", str(folder), "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path).returncode == 0
    kaggle.score_after = 0
    result = run("submissions", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert any("aaaaaa" in r and "0.9000±0.0020" in r and "0.91234" in r for r in rows)
    assert any("bbbbbb" in r and "0.9200±0.0020" in r for r in rows)
    # public 0.91234 against CV 0.90 and 0.92: +0.01234 and -0.00766
    assert ("CV against public score over 2 scored submission(s): public - CV is +0.0023 on average, "
            "+0.0123 at most; 0 of 2 within 2 standard errors") in result.stdout
    assert "rank: unknown" in result.stdout  # the fake has no leaderboard to place them on


def test_a_damaged_push_record_stops_the_push_before_kaggle_is_asked(kaggle, project):
    (project / "kernel-pushes.json").write_text("{not json")
    line = one_error_line(run("kernels", "push", env=kaggle.env, cwd=project))
    assert "kernel-pushes.json: not a JSON list" in line
    assert kaggle.requests == []
