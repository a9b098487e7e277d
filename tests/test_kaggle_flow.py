"""The Kaggle workflow against a fake Kaggle on loopback, driven through the real kaggle client."""
import base64
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import past_run_id
from fake_kaggle import FAKE_KEY, FAKE_TOKEN, FAKE_USER
from kaggle_fixtures import HOW_TO, KERNEL, SAMPLE, kaggle, one_error_line, project, run, sample, user_env  # noqa: F401

RUN_A, RUN_B = past_run_id("aaaaaa"), past_run_id("bbbbbb", days=1)  # two earlier runs, B the newer


def make_run(runs: Path, name: str, submission: bytes, config: dict | None = None) -> Path:
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    (run_dir / "submission.csv").write_bytes(submission)
    metrics = {"val_accuracy": 0.9125, "config": {"seed": 0, "epochs": 30, **(config or {})}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_client_imports_in_the_projects_environment_and_six_is_declared(tmp_path, user_env):
    import re
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "import kaggle.api.kaggle_api_extended"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env={**os.environ, **user_env})
    assert result.returncode == 0, result.stderr
    # Declared in pyproject.toml itself (what a fresh install reads), not merely in this venv's dist-info.
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    names = [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in project["project"]["dependencies"]]
    assert "six" in names and "kaggle" in names, names


def test_a_new_user_without_credentials_gets_one_line_from_each_command(tmp_path, user_env):
    (tmp_path / "sub.csv").write_bytes(sample("solution"))
    before = sorted(tmp_path.rglob("*"))
    for args in (["kernels", "push"], ["submit", "sub.csv", "--data", str(SAMPLE)], ["download"],
                 ["kernels", "status"], ["kernels", "output"], ["kernels", "logs"], ["kernels", "run"],
                 ["submit", "--kernel"], ["submissions"], ["leaderboard"]):
        result = run(*args, env=user_env, cwd=tmp_path)
        line = one_error_line(result)
        assert result.returncode == 2 and result.stdout == ""
        assert line.startswith("digit-recognizer: error: no Kaggle credentials found")
        assert all(word in line for word in HOW_TO), line
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even the client's config folder


def test_a_rejected_key_is_one_line_that_names_its_file_and_never_shows_the_key(tmp_path, kaggle):
    kaggle.key_file.write_text(json.dumps({"username": FAKE_USER, "key": "wrong" + FAKE_KEY}))
    (tmp_path / "sub.csv").write_bytes(sample("solution"))
    for args in (["submissions"], ["submit", "sub.csv", "--data", str(SAMPLE)]):
        result = run(*args, env=kaggle.env, cwd=tmp_path)
        line = one_error_line(result)
        assert "rejected the credentials" in line and str(kaggle.key_file) in line and "401" in line
        assert FAKE_KEY not in result.stdout + result.stderr
    assert not kaggle.calls("StartSubmissionUpload")


def test_a_key_file_readable_by_others_gives_one_warning_line(tmp_path, kaggle):
    kaggle.key_file.chmod(0o644)
    make_run(tmp_path / "submissions", RUN_A, sample("solution"))
    for args in (["submissions"], ["submit", "--data", str(SAMPLE)]):
        result = run(*args, env=kaggle.env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1 and f"chmod 600 {kaggle.key_file}" in warnings[0]


def test_competition_rules_not_accepted_says_where_to_accept_them(tmp_path, kaggle):
    kaggle.denied = {"DownloadDataFiles"}
    line = one_error_line(run("download", env=kaggle.env, cwd=tmp_path))
    assert "403" in line and "https://www.kaggle.com/competitions/digit-recognizer/rules" in line
    assert not (tmp_path / "data").exists()


def test_an_access_token_works_and_is_never_shown(tmp_path, kaggle):
    env = {**kaggle.env, "KAGGLE_CONFIG_DIR": str(tmp_path / "empty"), "KAGGLE_API_TOKEN": FAKE_TOKEN}
    result = run("kernels", "status", "--kernel", KERNEL, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert FAKE_TOKEN not in result.stdout + result.stderr
    assert kaggle.calls("GetKernelSessionStatus")[0].headers["Authorization"] == f"Bearer {FAKE_TOKEN}"

    env["KAGGLE_API_TOKEN"] = "KGAT_revoked"
    line = one_error_line(run("kernels", "status", "--kernel", KERNEL, env=env, cwd=tmp_path))
    assert "did not accept the credentials from KAGGLE_API_TOKEN" in line and "KGAT_revoked" not in line


def test_no_network_is_a_clear_line_not_a_hang(tmp_path, kaggle):
    with socket.socket() as probe:  # a port nobody listens on: connection refused, as when offline
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {**kaggle.env, "HTTP_PROXY": f"http://127.0.0.1:{closed}", "http_proxy": f"http://127.0.0.1:{closed}"}
    line = one_error_line(run("submissions", env=env, cwd=tmp_path))
    assert "cannot reach Kaggle" in line and "network" in line


def test_a_server_that_never_answers_is_cut_off_at_the_deadline(tmp_path, kaggle):
    with socket.socket() as silent:  # accepts connections (backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        proxy = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = {**kaggle.env, "HTTP_PROXY": proxy, "http_proxy": proxy, "DIGIT_RECOGNIZER_KAGGLE_TIMEOUT": "1.5"}
        clock = time.monotonic()
        line = one_error_line(run("kernels", "status", "--kernel", KERNEL, env=env, cwd=tmp_path))
        assert time.monotonic() - clock < 30
    assert "no answer from Kaggle within 1.5 s" in line


def test_validate_names_each_problem_on_its_own_line(tmp_path, kaggle):
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.csv").write_bytes(sample("test"))
    good = tmp_path / "good.csv"
    good.write_bytes(sample("solution"))
    result = run("validate", str(good), "--data", str(data), env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0 and "valid submission" in result.stdout and "1000 rows" in result.stdout

    lines = sample("solution").decode().splitlines()
    lines[0] = "ImageID,Label"
    lines[3] = "3,"
    lines[5] = "5,12"
    lines[7] = "7,x"
    lines[9] = "9,\u00b2"  # a digit to str.isdigit(), not to int() or Kaggle
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:-1]) + "\n")
    result = run("validate", str(bad), "--data", str(data), env=kaggle.env, cwd=tmp_path)
    problems = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert any("header is 'ImageID,Label', expected exactly 'ImageId,Label'" in p for p in problems)
    assert any("has 999 rows, expected 1000" in p for p in problems)
    assert any("line 4: Label is empty" in p for p in problems)
    assert any("line 6: Label '12' is not an integer 0-9" in p for p in problems)
    assert any("line 8: Label 'x' is not an integer 0-9" in p for p in problems)
    assert any("line 10: Label '\u00b2' is not an integer 0-9" in p for p in problems)
    assert len(problems) == 6, problems

    # Without --data the competition's own test.csv decides: 28,000 rows.
    result = run("validate", str(good), env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 1 and "has 1000 rows, expected 28000" in result.stderr
    assert kaggle.requests == []  # validation is local


def test_an_invalid_submission_never_reaches_kaggle(tmp_path, kaggle):
    broken = sample("solution").replace(b"\n7,", b"\n7,7,", 1)
    run_dir = make_run(tmp_path / "submissions", RUN_A, broken)
    result = run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 2 and "not uploaded" in result.stderr and "line 8: has 3 fields" in result.stderr
    assert kaggle.requests == []
    assert not (run_dir / "kaggle_submissions.json").exists()


def test_submit_uploads_the_newest_run_whole_and_records_it(tmp_path, kaggle):
    runs = tmp_path / "submissions"
    make_run(runs, RUN_A, sample("solution"))
    newest = make_run(runs, RUN_B, sample("solution"), {"optimizer": "adam", "epochs": 50, "lr": 0.02})
    result = run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (put,) = kaggle.calls("tok1")
    assert put.method == "PUT" and put.body == sample("solution")
    (create,) = kaggle.calls("CreateSubmission")
    message = create.json()["submissionDescription"]
    assert message == f"run {RUN_B}, val acc 0.9125, epochs=50 lr=0.02 optimizer=adam"
    (record,) = json.loads((newest / "kaggle_submissions.json").read_text())
    assert record["message"] == message and record["ref"] == 1001 and record["file"] == "submission.csv"
    assert record["status"] == "pending" and record["public_score"] is None

    # A file outside any run folder is submitted, and the missing record is said out loud.
    loose = tmp_path / "loose.csv"
    loose.write_bytes(sample("solution"))
    result = run("submit", str(loose), "-m", "by hand", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0 and "no submission record was kept" in result.stdout

    kaggle.score_after = 0
    result = run("submissions", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "bbbbbb" in line and "0.91234" in line)
    assert "complete" in row
    (record,) = json.loads((newest / "kaggle_submissions.json").read_text())
    assert record["status"] == "complete" and record["public_score"] == pytest.approx(0.91234)


def test_submit_wait_that_times_out_says_the_submission_is_made(tmp_path, kaggle):
    run_dir = make_run(tmp_path / "submissions", RUN_A, sample("solution"))
    kaggle.score_after = 10**6
    result = run("submit", "--data", str(SAMPLE), "--wait", "--wait-timeout", "0.3", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 2 and "still pending" in result.stderr.splitlines()[-1]
    assert "do not submit it again" in result.stderr
    (record,) = json.loads((run_dir / "kaggle_submissions.json").read_text())
    assert record["status"] == "pending" and record["ref"] == 1001


def test_the_daily_limit_stops_the_upload(tmp_path, kaggle):
    make_run(tmp_path / "submissions", RUN_A, sample("solution"))
    kaggle.limits = {"numToday": 5, "numTotal": 9, "numAllowedNow": 0}
    line = one_error_line(run("submit", "--data", str(SAMPLE), env=kaggle.env, cwd=tmp_path))
    assert "no submissions left today" in line
    assert not kaggle.calls("StartSubmissionUpload")


@pytest.mark.parametrize("statuses, code, calls", [(["QUEUED", "RUNNING", "COMPLETE"], 0, 3),
                                                   (["RUNNING", "ERROR"], 1, 2)])
def test_status_wait_stops_when_the_run_completes_or_fails(tmp_path, kaggle, statuses, code, calls):
    kaggle.kernel_statuses = statuses
    kaggle.failure_message = "CUDA out of memory"
    result = run("kernels", "status", "--kernel", KERNEL, "--wait", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert len(kaggle.calls("GetKernelSessionStatus")) == calls
    assert f"{KERNEL} (latest version; no push recorded here): {statuses[-1]}" in result.stdout
    assert "RUNNING" in result.stderr  # the progress line
    assert ("CUDA out of memory" in result.stdout) == (code == 1)


def test_status_wait_gives_up_at_its_timeout(tmp_path, kaggle):
    kaggle.kernel_statuses = ["RUNNING"]
    line = run("kernels", "status", "--kernel", KERNEL, "--wait", "--wait-timeout", "0.3", env=kaggle.env, cwd=tmp_path)
    assert line.returncode == 2 and "still RUNNING after" in line.stderr


def test_output_lands_in_a_new_run_folder_each_time(tmp_path, kaggle):
    files = {"submission.csv": sample("solution"), "metrics.json": b'{"val_accuracy": 0.9}',
             "confusion.png": b"\x89PNG\r\n\x1a\n fake picture"}
    kaggle.output_files, kaggle.output_log = files, "epoch 1 ...\n"
    kaggle.kernel_statuses = ["COMPLETE"]
    folders = []
    for flag in ("--runs", "--to"):  # --to: the earlier spelling, kept as a hidden alias
        result = run("kernels", "output", "--kernel", KERNEL, flag, "submissions", env=kaggle.env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        folders.append(Path(tmp_path, result.stdout.split("run folder: ")[1].split(" (")[0]))
    assert folders[0] != folders[1] and folders[0].parent == folders[1].parent == tmp_path / "submissions"
    for folder in folders:
        for name, data in files.items():
            assert (folder / name).read_bytes() == data
        assert (folder / "digit-recognizer-logistic-regression.log").read_text() == "epoch 1 ...\n"
        origin = json.loads((folder / "origin.json").read_text())
        assert origin["origin"] == "kaggle" and origin["kernel"] == KERNEL and origin["fetched_at"]
    assert not [p for p in (tmp_path / "submissions").iterdir() if p.name.startswith(".")]


def test_output_of_a_running_kernel_is_refused_without_a_folder(tmp_path, kaggle):
    kaggle.kernel_statuses = ["RUNNING"]
    line = one_error_line(run("kernels", "output", "--kernel", KERNEL, env=kaggle.env, cwd=tmp_path))
    assert "is RUNNING" in line and "status --wait" in line
    assert not (tmp_path / "submissions").exists()


def test_download_unzips_checks_and_is_idempotent(tmp_path, kaggle):
    kaggle.set_competition_zip({"train.csv": sample("train"), "test.csv": sample("test"),
                                "sample_submission.csv": sample("solution")})
    result = run("download", "--to", "kaggle-data", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--data kaggle-data" in result.stdout
    for name in ("train", "test"):
        assert (tmp_path / "kaggle-data" / f"{name}.csv").read_bytes() == sample(name)
    assert sorted(p.name for p in (tmp_path / "kaggle-data").iterdir()) == ["sample_submission.csv", "test.csv", "train.csv"]
    asked = len(kaggle.requests)
    result = run("download", "--to", "kaggle-data", env=kaggle.env, cwd=tmp_path)
    assert result.returncode == 0 and "already there" in result.stdout
    assert len(kaggle.requests) == asked


def test_a_download_that_is_not_the_competitions_csvs_writes_nothing(tmp_path, kaggle):
    kaggle.set_competition_zip({"train.csv": sample("train").replace(b"label,", b"digit,", 1), "test.csv": sample("test")})
    line = one_error_line(run("download", "--to", "kaggle-data", env=kaggle.env, cwd=tmp_path))
    assert "train.csv" in line and "label" in line
    assert not (tmp_path / "kaggle-data").exists()


def test_push_sends_the_committed_kernel_byte_for_byte_with_the_metadatas_flags(kaggle, project):
    metadata = json.loads((project / "kernel-metadata.json").read_text())
    assert metadata["id"].startswith("YOUR_KAGGLE_USERNAME/")
    result = run("kernels", "push", "--accelerator", "NvidiaTeslaT4", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    (push,) = kaggle.calls("SaveKernel")
    body = push.json()
    committed = json.loads((project / metadata["code_file"]).read_text(encoding="utf-8"))
    # The client sends the notebook with each cell's source joined into one string: the same cells.
    assert [("".join(c["source"]), c["cell_type"]) for c in json.loads(body["text"])["cells"]] == \
        [("".join(c["source"]), c["cell_type"]) for c in committed["cells"]]
    assert body["kernelType"] == "notebook"
    assert body["enableGpu"] is True and body["enableInternet"] is False
    assert body["competitionDataSources"] == ["digit-recognizer"] and body["machineShape"] == "NvidiaTeslaT4"
    slug = metadata["id"].split("/")[1]
    assert body["slug"] == f"{FAKE_USER}/{slug}"
    assert f"http://localhost/code/{FAKE_USER}/{slug}" in result.stdout
    # The placeholder is filled in the user's file, and nothing else there changes.
    assert json.loads((project / "kernel-metadata.json").read_text()) == {**metadata, "id": f"{FAKE_USER}/{slug}"}

    # A user's own id is left as it is.
    own = {**metadata, "id": f"bob/{slug}"}
    (project / "kernel-metadata.json").write_text(json.dumps(own, indent=1))
    before = (project / "kernel-metadata.json").read_bytes()
    result = run("kernels", "push", env=kaggle.env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert kaggle.calls("SaveKernel")[1].json()["slug"] == f"bob/{slug}"
    assert (project / "kernel-metadata.json").read_bytes() == before


def test_push_refuses_a_stale_kernel_or_bad_metadata_before_calling_kaggle(kaggle, project):
    metadata = json.loads((project / "kernel-metadata.json").read_text())
    kernel_file = project / metadata["code_file"]
    original = kernel_file.read_bytes()
    kernel_file.write_bytes(original.replace(b"SETTINGS = dict()", b"SETTINGS = dict(folds=5)"))  # by hand
    line = one_error_line(run("kernels", "push", env=kaggle.env, cwd=project))
    assert f"{metadata['code_file']} is not jupytext's conversion of " in line, line
    assert f"-m jupytext --update --to ipynb --output {metadata['code_file']} " in line and "kernel.py" in line
    kernel_file.write_bytes(original)
    for change, reason in (({"enable_internet": None}, '"enable_internet" to false explicitly'),
                           ({"competition_sources": []}, 'competition_sources lacks "digit-recognizer"'),
                           ({"title": "Something else entirely"}, "does not match the title")):
        broken = {k: v for k, v in {**metadata, **change}.items() if v is not None}
        (project / "kernel-metadata.json").write_text(json.dumps(broken))
        line = one_error_line(run("kernels", "push", env=kaggle.env, cwd=project))
        assert "kernel-metadata.json" in line and reason in line, line
    assert kaggle.requests == []


def test_the_whole_loop_push_status_output_validate_submit_submissions(tmp_path, kaggle, project):
    """One user's day, end to end, through the real kaggle client; the key shows up nowhere."""
    kaggle.set_competition_zip({"train.csv": sample("train"), "test.csv": sample("test"),
                                "sample_submission.csv": sample("solution")})
    kaggle.output_files = {"submission.csv": sample("solution"),
                           "metrics.json": json.dumps({"val_accuracy": 0.9231, "config": {"epochs": 40}}).encode()}
    kaggle.output_log = "training...\n"
    outputs = []

    def step(*args: str, code: int = 0):
        result = run(*args, env=kaggle.env, cwd=project)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == code, f"{args}: {result.stderr}"
        return result

    step("download")
    step("kernels", "push")
    step("kernels", "status", "--wait")
    assert [r.json() for r in kaggle.calls("GetKernelSessionStatus")][-1] == {
        "userName": FAKE_USER, "kernelSlug": "digit-recognizer-logistic-regression", "versionLabel": "v1"}
    run_dir = Path(project, step("kernels", "output").stdout.split("run folder: ")[1].split(" (")[0])
    step("validate", str(run_dir / "submission.csv"), "--data", "data")
    kaggle.score_after = 1
    submitted = step("submit", "--data", "data", "--wait")
    assert "public score: 0.91234" in submitted.stdout and "local validation accuracy 0.9231" in submitted.stdout
    listing = step("submissions")
    assert run_dir.name in listing.stdout

    (upload,) = [r for r in kaggle.requests if r.method == "PUT"]
    assert upload.body == (run_dir / "submission.csv").read_bytes() == sample("solution")
    (record,) = json.loads((run_dir / "kaggle_submissions.json").read_text())
    assert record["status"] == "complete" and record["public_score"] == pytest.approx(0.91234)
    assert f"run {run_dir.name}" in record["message"] and "val acc 0.9231" in record["message"]
    assert kaggle.api_calls()[:3] == ["DownloadDataFiles", "GetAcceleratorQuotaStatistics", "SaveKernel"]
    for path in [*project.rglob("*"), *tmp_path.glob("home/**/*")]:
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert not any(FAKE_KEY in text for text in outputs)


# --- the stand-in is as strict as Kaggle where the kit could aim a request at the wrong place ----------

def raw_call(kaggle, method: str, path: str, body: bytes) -> int:
    """One HTTP request to the stand-in with alice's key, as the client would send it; its status code."""
    host, port = kaggle._server.server_address[:2]
    auth = base64.b64encode(f"{FAKE_USER}:{FAKE_KEY}".encode()).decode()
    request = urllib.request.Request(f"http://{host}:{port}{path}", data=body, method=method,
                                     headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def api(kaggle, service: str, method: str, body: dict) -> int:
    return raw_call(kaggle, "POST", f"/api/v1/{service}/{method}", json.dumps(body).encode())


def test_the_stand_in_refuses_another_competition_another_kernel_and_a_short_upload(kaggle):
    competitions, kernels = "competitions.CompetitionApiService", "kernels.KernelsApiService"
    for method in ("ListSubmissions", "GetSubmissionLimits", "GetLeaderboard", "DownloadLeaderboard",
                   "StartSubmissionUpload", "CreateSubmission", "DownloadDataFiles"):
        assert api(kaggle, competitions, method, {"competitionName": "titanic"}) == 404, method
    assert api(kaggle, competitions, "ListSubmissions", {"competitionName": "digit-recognizer"}) == 200
    for owner, slug in (("bob", "digit-recognizer-logistic-regression"), (FAKE_USER, "another-kernel")):
        for method in ("GetKernelSessionStatus", "ListKernelSessionOutput"):
            assert api(kaggle, kernels, method, {"userName": owner, "kernelSlug": slug}) == 404, (method, owner, slug)
        assert raw_call(kaggle, "GET", f"/api/v1/kernels/logs/stream/{owner}/{slug}?versionLabel=v1", None) == 404
    assert api(kaggle, competitions, "CreateCodeSubmission", {"competitionName": "digit-recognizer",
                                                              "kernelOwner": "bob", "kernelSlug": "x"}) == 404
    assert api(kaggle, kernels, "GetKernelSessionStatus", {"userName": FAKE_USER,
                                                           "kernelSlug": "digit-recognizer-logistic-regression"}) == 200
    assert api(kaggle, competitions, "StartSubmissionUpload", {"competitionName": "digit-recognizer",
                                                               "contentLength": 10, "fileName": "s.csv"}) == 200
    assert raw_call(kaggle, "PUT", "/upload/tok1", b"123456789") == 400  # 9 bytes, 10 declared
    assert raw_call(kaggle, "PUT", "/upload/tok1", b"1234567890") == 200


def test_status_of_a_kernel_that_is_not_there_is_one_line_not_a_wait(tmp_path, kaggle):
    line = one_error_line(run("kernels", "status", "--kernel", f"{FAKE_USER}/no-such-kernel", "--wait",
                              "--wait-timeout", "5", env=kaggle.env, cwd=tmp_path))
    assert "not found on Kaggle" in line and "no-such-kernel" in line
    (asked,) = kaggle.calls("GetKernelSessionStatus")
    assert asked.json() == {"userName": FAKE_USER, "kernelSlug": "no-such-kernel"}
