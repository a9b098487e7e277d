"""The first hour as a new user lives it (issue 21): every printed next step runs as printed, `predict`
never predicts the sample by surprise, validate's and score's messages say what is true, a flag a run
ignores is said to be ignored, and --help says what each flag is.

Real-data runs here train on a folder of real digits other than the embedded sample's layout: the
sample's 4,000 training digits with the first 300 of its test images as test.csv.
"""
import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, past_run_id, run_cli
from digit_recognizer.next_steps import push_takes
from digit_recognizer.notebook import SCRIPT_NAME, SOURCE
from kaggle_fixtures import kaggle, one_error_line, sample, user_env  # noqa: F401

VENV = Path(sys.executable).parent.parent  # the project's venv: what the README's commands make
SCRIPT = Path(sys.executable).parent / "digit-recognizer"
TEST_ROWS = 300


def not_activated(env: dict | None = None) -> dict:
    """The environment of a shell where the venv is not activated: its bin/ is not on PATH."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != SCRIPT.parent.resolve()]
    full = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return {**full, **(env or {}), "PATH": os.pathsep.join(path)}


def shell(line: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """A printed command line, run by a shell exactly as printed."""
    return subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def printed(stdout: str, prefix: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return line[len(prefix):]


def write_real_data(folder: Path, test_rows: int = TEST_ROWS) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.csv").write_bytes(sample("train"))
    test = sample("test").decode().splitlines()
    (folder / "test.csv").write_text("\n".join(test[:test_rows + 1]) + "\n")
    return folder


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Path, Path]:
    """(the working folder, the run folder) of a run on real data that is not the sample."""
    work = tmp_path_factory.mktemp("first-hour")
    write_real_data(work / "real")
    done = run_cli("train", "--data", "real", cwd=work)
    assert done.returncode == 0, done.stderr
    return work, work / printed(done.stdout, "run folder: ")


# ---- 1. predict without --data -----------------------------------------------------------------

def test_predict_without_data_predicts_what_the_model_was_trained_on(real_run, tmp_path):
    work, run = real_run
    done = run_cli("predict", "--model", str(run / "model.pt"), "--out", str(tmp_path / "a.csv"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(f"data: {work / 'real'} (what ")
    assert len((tmp_path / "a.csv").read_text().splitlines()) == TEST_ROWS + 1  # not the sample's 1000


def test_predict_refuses_when_the_training_data_is_gone_or_unknown(real_run, tmp_path):
    import torch

    from digit_recognizer.errors import UserError
    from digit_recognizer.saved_model import trained_on

    work, run = real_run
    moved = tmp_path / "elsewhere"
    (work / "real").rename(moved)
    try:
        line = one_error_line(run_cli("predict", "--model", str(run / "model.pt"), "--out", str(tmp_path / "b.csv")))
    finally:
        moved.rename(work / "real")
    assert f"was trained on {work / 'real'}, which is not there any more; pass --data DIR" in line
    assert not (tmp_path / "b.csv").exists()
    saved = torch.load(run / "model.pt", weights_only=True)
    del saved["data"]  # a model.pt that does not say, and no run folder beside it to ask
    torch.save(saved, tmp_path / "model.pt")
    with pytest.raises(UserError, match="does not say what data it was trained on; pass --data DIR"):
        trained_on(tmp_path / "model.pt", saved)
    given = run_cli("predict", "--model", str(tmp_path / "model.pt"), "--data", str(work / "real"),
                    "--out", str(tmp_path / "c.csv"))
    assert given.returncode == 0 and f"({TEST_ROWS} rows)" in given.stdout


# ---- 2. the printed next step runs as printed ----------------------------------------------------

@pytest.mark.skipif(not SCRIPT.is_file(), reason="needs the console script pip installs beside the interpreter")
def test_the_printed_next_steps_run_as_printed_in_a_venv_that_is_not_activated(kaggle, tmp_path):
    """The README's `.venv/bin/digit-recognizer train`, then each printed command pasted as printed."""
    kaggle.set_competition_zip({"train.csv": sample("train"), "test.csv": sample("test")})
    (tmp_path / ".venv").symlink_to(VENV, target_is_directory=True)
    env = not_activated(kaggle.env)
    assert shell("digit-recognizer --version", tmp_path, env).returncode == 127  # not on PATH: not activated
    first = shell(".venv/bin/digit-recognizer train --weight-decay 0.01", tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert printed(first.stdout, "next: ") == ".venv/bin/digit-recognizer download"
    assert printed(first.stdout, "then: ") == ".venv/bin/digit-recognizer train --data data --weight-decay 0.01"
    download = shell(printed(first.stdout, "next: "), tmp_path, env)
    assert download.returncode == 0, download.stderr
    assert printed(download.stdout, "next: ") == ".venv/bin/digit-recognizer train --data data"
    again = shell(printed(first.stdout, "then: "), tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert f"data: {tmp_path / 'data'} (4000 train, 1000 test images)" in again.stdout


@pytest.mark.skipif(not SCRIPT.is_file(), reason="needs the console script pip installs beside the interpreter")
def test_a_run_on_kaggle_sized_test_data_ends_with_its_submit_and_push(kaggle, kaggle_size, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(sample("train"))  # small, so the run is quick; test.csv is Kaggle's size
    (data / "test.csv").symlink_to(kaggle_size / "test.csv")
    (tmp_path / ".venv").symlink_to(VENV, target_is_directory=True)
    env = not_activated(kaggle.env)
    done = shell(".venv/bin/digit-recognizer train --data data --seed 3 --features normalised", tmp_path, env)
    assert done.returncode == 0, done.stderr
    run = printed(done.stdout, "run folder: ")
    assert printed(done.stdout, "next: ") == f".venv/bin/digit-recognizer submit {run} --wait"
    # with the options it used, which `kernels push` takes (push_takes checks with push's own parser)
    assert printed(done.stdout, "or, on Kaggle's machines: ") == \
        ".venv/bin/digit-recognizer kernels push --seed 3 --features normalised"
    assert push_takes(" --seed 3 --features normalised") and not push_takes(" --no-such-flag 1")
    kaggle.score_after = 0
    submitted = shell(printed(done.stdout, "next: "), tmp_path, env)
    assert submitted.returncode == 0, submitted.stderr
    assert "public score: 0.91234" in submitted.stdout


def test_run_as_python_dash_m_prints_commands_the_same_way(tmp_path):
    done = run_cli("train", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert printed(done.stdout, "next: ") == f"{shlex.quote(sys.executable)} -m digit_recognizer download"
    # and what it prints runs: without credentials, the kit's own one-line answer, not `command not found`
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    result = shell(printed(done.stdout, "next: "), tmp_path, {**env, "HOME": str(home)})
    line = one_error_line(result)
    assert result.returncode == 2 and line.startswith("digit-recognizer: error: ") and "credentials" in line.lower()


# ---- 3. and 4. validate and score say what is true --------------------------------------------

def test_validate_names_the_row_counts_and_the_data_the_run_was_trained_on(real_run):
    work, run = real_run
    result = run_cli("validate", str(run), cwd=work)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()  # one problem, not a second line repeating it
    assert f"has {TEST_ROWS} rows, expected 28000 (one per image of the competition's test.csv)" in line
    assert f"was trained on real ({TEST_ROWS} test images)" in line and "sample" not in line
    check = re.search(r"test images\): (.*) checks it against that test\.csv$", line).group(1)
    assert check.endswith(f"-m digit_recognizer validate {run / 'submission.csv'} --data real")
    ran = shell(check, work, dict(os.environ))
    assert ran.returncode == 0 and f"valid submission: header ImageId,Label, {TEST_ROWS} rows" in ran.stdout
    # a kernel's run: its data is Kaggle's input folder, not here, so no command that could not run
    kernel_run = work / "kernel-runs" / past_run_id("ka66le")
    kernel_run.mkdir(parents=True)
    (kernel_run / "submission.csv").write_bytes((run / "submission.csv").read_bytes())
    (kernel_run / "metrics.json").write_text('{"data": "/kaggle/input/digit-recognizer", "examples": {"test": 300}}')
    (line,) = run_cli("validate", str(kernel_run), cwd=work).stderr.splitlines()
    assert line.endswith(f"its run {kernel_run} was trained on /kaggle/input/digit-recognizer (300 test images)")


def test_score_takes_a_run_folder_and_names_the_solution_it_expected(real_run, tmp_path):
    work, run = real_run
    line = one_error_line(run_cli("score", str(run), cwd=work))
    assert (f"has {TEST_ROWS} rows, expected 1000 (one per row of the embedded sample's solution, the truth for "
            f"its 1000 test images; --solution FILE scores against another)") in line
    assert "was trained on real, not on the sample" in line
    solution = tmp_path / "solution.csv"
    truth = gzip.decompress((ROOT / "src/digit_recognizer/sample/solution.csv.gz").read_bytes()).decode().splitlines()
    solution.write_text("\n".join(truth[:TEST_ROWS + 1]) + "\n")
    scored = run_cli("score", str(run), "--solution", str(solution), cwd=work)
    assert scored.returncode == 0 and scored.stdout.startswith("accuracy: 0.")


# ---- 6. flags a run ignores ---------------------------------------------------------------------

def two_per_digit(folder: Path) -> Path:
    folder.mkdir()
    rows = sample("train").decode().splitlines()
    kept, seen = [rows[0]], {}
    for row in rows[1:]:
        digit = row.split(",", 1)[0]
        if seen.get(digit, 0) < 2:
            seen[digit] = seen.get(digit, 0) + 1
            kept.append(row)
    (folder / "train.csv").write_text("\n".join(kept) + "\n")
    (folder / "test.csv").write_text("\n".join(sample("test").decode().splitlines()[:11]) + "\n")
    return folder


def test_folds_on_two_digits_each_is_taken_by_train_and_kernel_alike_and_says_what_it_ignored(tmp_path):
    data = two_per_digit(tmp_path / "tiny")
    flags = ["--folds", "2", "--val-fraction", "0.5", "--refit"]
    notice = ("note: --val-fraction 0.5 and --refit do not apply with folds and are ignored: every training image "
              "is validated once, by the folds, and the model submitted is always the refit on all of train.csv")
    trained = run_cli("train", "--data", str(data), *flags, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr.splitlines() == [notice]
    assert "refit to the optimum on train+validation" not in trained.stdout
    assert "predictions from the refit to the optimum on all 20 training images at C = 0.1 (weight decay 0.5)" \
        in trained.stdout  # 1 / (C n): the penalty follows the 20 images it is fitted on
    script = tmp_path / SCRIPT_NAME
    shutil.copy(SOURCE, script)
    kernel = subprocess.run([sys.executable, str(script), "--input", str(data), "--output", str(tmp_path / "out"),
                             *flags], capture_output=True, text=True, timeout=300)
    assert kernel.returncode == 0, kernel.stderr
    assert notice in kernel.stderr.splitlines()
    table = run_cli("runs", cwd=tmp_path).stdout
    assert "folds=2" in table
    assert "val_fraction" not in table and "refit" not in table  # not shown as settings that were used
    # without --folds the hold-out split is what cannot be made, and both say so in the same words
    refused = one_error_line(run_cli("train", "--data", str(data), cwd=tmp_path))
    kernel = subprocess.run([sys.executable, str(script), "--input", str(data), "--output", str(tmp_path / "out2")],
                            capture_output=True, text=True)
    assert refused.split("error: ", 1)[1] == kernel.stderr.strip().split("error: ", 1)[1]
    assert "--val-fraction 0.1 leaves digit 0 (2 examples in train.csv) with no validation example" in refused


# ---- 8. --help -------------------------------------------------------------------------------------

def help_text(*command: str) -> str:
    return " ".join(run_cli(*command, "--help").stdout.split())  # argparse wraps lines at the terminal's width


def test_help_lists_user_commands_and_says_what_each_flag_is():
    listed = run_cli("--help").stdout
    assert "\n    bundle " not in listed and "\n    train " in listed and "\n    kernels " in listed
    assert "training options: any flag of 'digit-recognizer train'" in help_text("kernels", "push")
    assert "--weight-decay WEIGHT_DECAY L2 penalty on the weights" in help_text("train")
    predict = help_text("predict")
    assert "--model MODEL a run's model.pt --data" in predict and "(default: none)" not in predict
    assert "FILE|RUN_DIR a submission CSV, or a run folder holding submission.csv" in help_text("score")
    assert "--clear remove every entry (default: off)" in help_text("cache")
    for command in (["kernels", "push"], ["kernels", "run"]):
        text = help_text(*command)
        assert "--time-limit SECONDS" in text and "--timeout" not in text
    for command in (["kernels", "status"], ["kernels", "logs"], ["kernels", "run"], ["submit"]):
        text = help_text(*command)
        assert "--wait-timeout SECONDS" in text and "--timeout" not in text


def test_the_old_timeout_spelling_still_works_and_says_its_new_name(capsys):
    from digit_recognizer.cli import build_parser

    assert build_parser("kernels").parse_args(["kernels", "status", "--timeout", "5"]).wait_timeout == 5
    assert "warning: --timeout is now --wait-timeout" in capsys.readouterr().err
    assert build_parser("kernels").parse_args(["kernels", "run", "--timeout", "600"]).time_limit == 600  # its old meaning
    assert "warning: --timeout is now --time-limit" in capsys.readouterr().err


def test_debug_works_after_the_subcommand_too():
    late = run_cli("train", "--folds", "1", "--debug")
    assert late.returncode != 0 and "Traceback" in late.stderr
    assert "Traceback" not in run_cli("train", "--folds", "1").stderr
