"""A run's submission records come only from the kit's own `submit` (issue 28, class 4): a kernel whose
output holds a kaggle_submissions.json (or an origin.json) cannot make `runs` show a run as submitted
and scored, and the file it brought is kept aside under another name, not lost."""
import json

from kaggle_fixtures import KERNEL, SAMPLE, kaggle, run, sample, submitted_column, user_env  # noqa: F401

PLANTED = [{"submitted_at": "2020-01-01T00:00:00+00:00", "message": "x", "ref": 1, "status": "complete",
            "public_score": 1.0}]


def test_a_kernels_planted_submission_record_is_kept_aside_and_never_read_as_the_runs(tmp_path, kaggle):
    origin = {"origin": "kaggle", "kernel": "mallory/other", "version": 99}
    kaggle.add_version(1, ["COMPLETE"], {"submission.csv": sample("solution"),
                                         "kaggle_submissions.json": json.dumps(PLANTED).encode(),
                                         "origin.json": json.dumps(origin).encode()})
    result = run("kernels", "output", "--kernel", KERNEL, "--version", "1", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kept as from-kernel.kaggle_submissions.json, not used as this run's record" in result.stdout
    (folder,) = (tmp_path / "submissions").iterdir()
    assert not (folder / "kaggle_submissions.json").exists()
    assert json.loads((folder / "from-kernel.kaggle_submissions.json").read_text()) == PLANTED
    assert json.loads((folder / "from-kernel.origin.json").read_text()) == origin
    assert json.loads((folder / "origin.json").read_text())["kernel"] == KERNEL  # the kit's own
    assert submitted_column(run("runs", env=kaggle.env, cwd=tmp_path).stdout, folder.name) == ("no", "-")
    submitted = run("submit", str(folder), "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    (record,) = json.loads((folder / "kaggle_submissions.json").read_text())  # the kit's own record, alone
    assert record["ref"] == 1001 and record["status"] == "pending"
