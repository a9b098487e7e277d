"""README's "Your first Kaggle submission", followed against the fake Kaggle (issue 11): its two
routes end to end, and the sample run that must never be sent.

The fake's competition zip holds the embedded sample's CSVs (4,000 train and 1,000 test rows) to keep
training fast, so `submit` is told that test set with `--data data`; with Kaggle's real 28,000-row
test.csv the README's plain `submit` checks against it by default.
"""
import json
from pathlib import Path

from conftest import past_run_id
from kaggle_fixtures import kaggle, one_error_line, project, run, sample, user_env  # noqa: F401

SAMPLE_RUN = past_run_id("5a5a5a")


def competition_zip(kaggle) -> None:
    kaggle.set_competition_zip({"train.csv": sample("train"), "test.csv": sample("test"),
                                "sample_submission.csv": sample("solution")})


def step(kaggle, cwd: Path, *args: str):
    result = run(*args, env=kaggle.env, cwd=cwd)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result


def test_download_train_submit(kaggle, tmp_path):
    competition_zip(kaggle)
    step(kaggle, tmp_path, "download")
    trained = step(kaggle, tmp_path, "train", "--data", "data")
    run_dir = tmp_path / trained.stdout.split("run folder: ")[1].splitlines()[0]
    submitted = step(kaggle, tmp_path, "submit", "--data", "data")
    assert f"submitted {Path('submissions') / run_dir.name / 'submission.csv'}" in submitted.stdout
    (upload,) = [r for r in kaggle.requests if r.method == "PUT"]
    assert upload.body == (run_dir / "submission.csv").read_bytes()
    (record,) = json.loads((run_dir / "kaggle_submissions.json").read_text())
    assert record["ref"] == 1001
    assert kaggle.api_calls() == ["DownloadDataFiles", "GetSubmissionLimits", "StartSubmissionUpload",
                                  "CreateSubmission"]


def test_download_push_status_output_submit(kaggle, project):
    competition_zip(kaggle)
    kaggle.output_files = {"submission.csv": sample("solution"), "metrics.json": b'{"val_accuracy": 0.9231}'}
    step(kaggle, project, "download")
    pushed = step(kaggle, project, "kernels", "push")
    assert "version 1 pushed" in pushed.stdout
    assert "version 1: COMPLETE" in step(kaggle, project, "kernels", "status", "--wait").stdout
    output = step(kaggle, project, "kernels", "output")
    run_dir = project / output.stdout.split("run folder: ")[1].split(" (")[0]
    step(kaggle, project, "submit", "--data", "data")
    (upload,) = [r for r in kaggle.requests if r.method == "PUT"]
    assert upload.body == (run_dir / "submission.csv").read_bytes() == sample("solution")
    calls = [c for c in kaggle.api_calls() if c != "logs/stream"]  # status --wait also streams the live log
    assert calls == ["DownloadDataFiles", "GetAcceleratorQuotaStatistics", "SaveKernel",
                     *["GetKernelSessionStatus"] * 4, "ListKernelSessionOutput",
                     "GetSubmissionLimits", "StartSubmissionUpload", "CreateSubmission"]


def sample_run(runs: Path) -> Path:
    folder = runs / SAMPLE_RUN
    folder.mkdir(parents=True)
    (folder / "submission.csv").write_bytes(sample("solution"))
    (folder / "metrics.json").write_text(json.dumps({"data": "embedded sample", "val_accuracy": 0.94}))
    return folder


def test_submit_refuses_a_sample_run_before_any_network_call(tmp_path, user_env):
    """No server and no credentials at all: the refusal comes first, from the run folder alone."""
    sample_run(tmp_path / "submissions")
    line = one_error_line(run("submit", env=user_env, cwd=tmp_path))
    assert f"{SAMPLE_RUN}: trained on the embedded sample" in line
    assert "-m digit_recognizer download', then '" in line and "-m digit_recognizer train --data data'" in line
    assert not (tmp_path / "home" / ".kaggle").exists()


def test_a_sample_run_costs_no_request_even_with_credentials(kaggle, tmp_path):
    sample_run(tmp_path / "submissions")
    one_error_line(run("submit", env=kaggle.env, cwd=tmp_path))
    assert kaggle.requests == []


def test_validate_names_the_sample_run_as_the_cause_of_a_wrong_row_count(tmp_path, user_env):
    folder = sample_run(tmp_path / "submissions")
    result = run("validate", str(folder), env=user_env, cwd=tmp_path)
    assert result.returncode == 1
    line = next(line for line in result.stderr.splitlines() if "rows, expected" in line)
    assert "has 1000 rows, expected 28000 (one per image of the competition's test.csv)" in line
    assert f"its run {folder} was trained on the embedded sample" in line
    assert "-m digit_recognizer download" in line and "train --data data" in line
    loose = tmp_path / "loose.csv"
    loose.write_bytes(sample("solution"))
    result = run("validate", str(loose), env=user_env, cwd=tmp_path)
    # a file outside any run folder: no guess at its cause, only how to check it against its own test.csv
    assert result.stderr.splitlines() == [f"{loose}: has 1000 rows, expected 28000 (one per image of the competition's "
                                          "test.csv); --data DIR checks it against the test.csv it answers"]
