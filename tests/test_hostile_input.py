"""Hostile inputs (issue 20, classes 4, 7, 8 and 9): integers past Python's 4,300-digit limit, JSON
nested 100,000 deep, zip and gz bombs, FIFOs, devices and folders where a file belongs, ambiguous
zips, a model with NaN weights, a closed or full stdout, and Ctrl-C while the console script imports.

Each case runs the real command in a subprocess (every wait bounded) and asserts the exit code,
exactly one line on stderr, no traceback, and every file that existed before byte-identical after.
"""
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
import zlib
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from fake_kaggle import FAKE_KEY, FAKE_USER
from kaggle_fixtures import kaggle, project, sample, user_env  # noqa: F401
from test_bad_input import PREFIX, SOLUTION, TEST, TRAIN_20, earlier_run, snapshot, text

HUGE = "9" * 5000  # past the 4,300 digits Python's int() accepts from text
DEEP = "[" * 100_000 + "]" * 100_000
PROGRESS = re.compile(r"^(train|refit)\b.*epoch")


def the_line(result, code: int = 2) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith(PREFIX), result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    return lines[0]


def with_cell(lines: list[str], row: int, column: int, value: str) -> bytes:
    cells = lines[row].split(",")
    cells[column] = value
    return text([*lines[:row], ",".join(cells), *lines[row + 1:]])


def bomb(size: int = 600 << 20) -> bytes:
    """A gzip stream of `size` bytes of '0,' that is well under a megabyte itself."""
    pack = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"0," * (1 << 19)
    return b"".join([pack.compress(chunk) for _ in range(size // len(chunk))] + [pack.flush()])


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_bytes(text(TRAIN_20))
    (tmp_path / "data" / "test.csv").write_bytes(text(TEST))
    earlier_run(tmp_path / "submissions")
    (tmp_path / "sub.csv").write_bytes(text(SOLUTION))
    (tmp_path / "sol.csv").write_bytes(text(SOLUTION))
    return tmp_path


def kaggle_config(work: Path, key_file: str | None = None) -> dict:
    config = work / "config"
    config.mkdir(exist_ok=True)
    (config / "kaggle.json").write_text(key_file or json.dumps({"username": FAKE_USER, "key": FAKE_KEY}))
    (config / "kaggle.json").chmod(0o600)
    (work / "home").mkdir(exist_ok=True)
    return {"KAGGLE_CONFIG_DIR": str(config), "HOME": str(work / "home"), "KAGGLE_API_ENVIRONMENT": "LOCALHOST"}


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def device(path: Path) -> Path:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")
    return path


def folder(path: Path) -> Path:
    path.unlink(missing_ok=True)
    path.mkdir()
    return path


TRAIN = ["train", "--data", "data", "--out", "submissions"]
SCORE = ["score", "sub.csv", "--solution", "sol.csv"]
# case -> (set-up(work) -> (argv, env), fragments the one line must hold)
CASES = {
    "a pixel of 5000 digits": (lambda w: ((w / "data/train.csv").write_bytes(with_cell(TRAIN_20, 3, 5, HUGE)), TRAIN),
                               ["train.csv: line 4, column pixel4", "expected an integer 0-255", "999..."]),
    "a label of 5000 digits": (lambda w: ((w / "data/train.csv").write_bytes(with_cell(TRAIN_20, 3, 0, HUGE)), TRAIN),
                               ["train.csv: line 4, column label", "expected an integer 0-9"]),
    "an ImageId of 5000 digits": (lambda w: ((w / "sub.csv").write_bytes(with_cell(SOLUTION, 2, 0, HUGE)),
                                             SCORE), ["sub.csv: line 3: ImageId 999", "far outside"]),
    "a Label of 5000 digits": (lambda w: ((w / "sub.csv").write_bytes(with_cell(SOLUTION, 2, 1, HUGE)),
                                          SCORE), ["sub.csv: line 3: Label", "not an integer 0-9"]),
    "a gz bomb": (lambda w: ((w / "data/train.csv").unlink(), (w / "data/train.csv.gz").write_bytes(bomb()), TRAIN),
                  ["train.csv.gz: unpacks to more than 512 MiB"]),
    "a zip bomb": (lambda w: ((w / "k.zip").write_bytes(zip_of({"train.csv": gzip.decompress(bomb()),
                                                               "test.csv": text(TEST)})),
                              ["train", "--data", "k.zip", "--out", "submissions"]),
                   ["k.zip: 'train.csv' unpacks to more than 512 MiB"]),
    "a zip holding two train.csv": (lambda w: ((w / "k.zip").write_bytes(zip_of(
        {"train.csv": text(TRAIN_20), "old/train.csv": text(TRAIN_20[:50]), "test.csv": text(TEST)})),
        ["train", "--data", "k.zip", "--out", "submissions"]), ["k.zip: the zip holds two train.csv", "'old/train.csv'"]),
    "score of a FIFO": (lambda w: (fifo(w / "pipe.csv"), ["score", "pipe.csv"]), ["pipe.csv: is a FIFO"]),
    "validate of a FIFO": (lambda w: (fifo(w / "pipe.csv"), ["validate", "pipe.csv", "--data", "data"]),
                           ["pipe.csv: is a FIFO"]),
    "score of a link to /dev/zero": (lambda w: (device(w / "zero.csv"), ["score", "sub.csv", "--solution", "zero.csv"]),
                                     ["zero.csv: is a device"]),
    "a train.csv that is a folder": (lambda w: (folder(w / "data/train.csv"), TRAIN), ["data/train.csv: is a folder"]),
    "a train.csv that is a FIFO": (lambda w: (fifo(w / "data/train.csv"), TRAIN), ["data/train.csv: is a FIFO"]),
    "a test.csv that is /dev/zero": (lambda w: (device(w / "data/test.csv"), TRAIN), ["data/test.csv: is a device"]),
}
KAGGLE_CASES = {  # the same, in the files the Kaggle commands read before any network call
    "kaggle.json with an int of 5000 digits": ('{"username": "a", "key": ' + HUGE + "}", None, ["submissions"],
                                               ["kaggle.json: not readable as JSON"]),
    "kaggle.json nested 100,000 deep": (DEEP, None, ["submissions"], ["kaggle.json: not readable as JSON"]),
    "kernel-metadata.json with an int of 5000 digits": (None, ("kernel-metadata.json", '{"id": ' + HUGE + "}"),
                                                        ["kernels", "push"], ["kernel-metadata.json: holds an integer"]),
    "kernel-metadata.json nested 100,000 deep": (None, ("kernel-metadata.json", DEEP), ["kernels", "push"],
                                                 ["kernel-metadata.json: nested too deeply"]),
    "kernel-pushes.json with an int of 5000 digits": (None, ("kernel-pushes.json", '[{"version": ' + HUGE + "}]"),
                                                      ["kernels", "push"], ["kernel-pushes.json: not a JSON list"]),
    "kernel-pushes.json nested 100,000 deep": (None, ("kernel-pushes.json", DEEP), ["kernels", "push"],
                                               ["kernel-pushes.json: not a JSON list"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_line(work, case):
    setup, fragments = CASES[case]
    argv = setup(work)[-1]
    before = snapshot(work) if "FIFO" not in case else None
    result = run_cli(*argv, cwd=work, timeout=120)
    line = the_line(result)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    if before is not None:
        assert snapshot(work) == before


@pytest.mark.parametrize("case", list(KAGGLE_CASES))
def test_hostile_kaggle_files_are_one_line(work, case):
    key_file, project_file, argv, fragments = KAGGLE_CASES[case]
    env = kaggle_config(work, key_file)
    project = work / "project"
    project.mkdir()
    (project / "kernel-metadata.json").write_bytes((ROOT / "kernel-metadata.json").read_bytes())
    shutil.copytree(ROOT / "kernel", project / "kernel")
    if project_file:
        (project / project_file[0]).write_text(project_file[1])
    before = snapshot(work)
    result = run_cli(*argv, cwd=project, env=env, timeout=120)
    line = the_line(result)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert snapshot(work) == before


def test_download_refuses_a_zip_with_two_train_csv_and_writes_nothing(tmp_path, kaggle):
    kaggle.set_competition_zip({"train.csv": sample("train"), "extra/train.csv": sample("train")[:5000],
                                "test.csv": sample("test")})
    result = run_cli("download", "--to", "data", cwd=tmp_path, env=kaggle.env, timeout=120)
    line = the_line(result)
    assert "two train.csv" in line and "'extra/train.csv'" in line
    assert not (tmp_path / "data").exists()


def test_download_replaces_the_three_files_as_one_unit_keeping_an_older_one(tmp_path, kaggle):
    files = {"train.csv": sample("train"), "test.csv": sample("test"), "sample_submission.csv": sample("solution")}
    kaggle.set_competition_zip(files)
    (tmp_path / "data").mkdir()
    older = text(TRAIN_20)  # an older train.csv, without its test.csv
    (tmp_path / "data" / "train.csv").write_bytes(older)
    result = run_cli("download", "--to", "data", cwd=tmp_path, env=kaggle.env, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for name, data in files.items():
        assert (tmp_path / "data" / name).read_bytes() == data  # all three are the download's
    (kept,) = [p for p in (tmp_path / "data").iterdir() if p.name.startswith("train.csv.before-download-")]
    assert kept.read_bytes() == older and f"as {kept.name}" in result.stdout
    assert len(list((tmp_path / "data").iterdir())) == 4  # no staging folder left


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("trained")
    (work / "data").mkdir()
    (work / "data" / "train.csv").write_bytes(text(TRAIN_20))
    (work / "data" / "test.csv").write_bytes(text(TEST))
    result = run_cli("train", "--data", "data", "--out", "runs", cwd=work, timeout=120)
    assert result.returncode == 0, result.stderr
    (run,) = (work / "runs").iterdir()
    return run / "model.pt"


def nan_everywhere(state: dict) -> None:
    for tensor in state.values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))


def zero_scale(state: dict) -> None:
    state["std"].zero_()


def enormous_weights(state: dict) -> None:  # finite, but every score overflows to infinity
    state["linear.weight"].fill_(3e38)


@pytest.mark.parametrize("damage, expected", [
    (nan_everywhere, "NaN or infinite"),
    (zero_scale, "its std holds zeros or negative values, so it cannot standardise"),
    (enormous_weights, "(the largest weight is 3e+38), so it cannot predict"),
], ids=["NaN weights", "a zero scale", "weights of 3e38"])
def test_predict_refuses_a_model_that_cannot_make_predictions(work, trained, damage, expected):
    """A degenerate model.pt wrote 1,000 labels of 0 and exited 0 (issue 28, item 5): refused in one line."""
    import torch

    saved = torch.load(trained, weights_only=True)
    damage(saved["state_dict"])
    torch.save(saved, work / "model.pt")
    before = snapshot(work)
    result = run_cli("predict", "--model", "model.pt", "--data", "data", cwd=work, timeout=120)
    line = the_line(result)
    assert "model.pt" in line and expected in line, line
    assert snapshot(work) == before


def test_a_fit_that_cannot_reach_the_optimum_says_so_and_ends_soon(work):
    """400 copies of one image under ten labels: no model can do better than chance, and the objective stops
    falling at float32's precision far from a zero gradient. It ran to the 1,000-iteration cap for 55 s and
    then said "fitted to the optimum" (issue 28, item 5); now it stops once the objective stalls and says
    where it stopped, in the progress, the summary and metrics.json."""
    pixels = TRAIN_20[1].split(",", 1)[1]
    (work / "same").mkdir()
    (work / "same" / "train.csv").write_bytes(text([TRAIN_20[0], *(f"{i % 10},{pixels}" for i in range(400))]))
    (work / "same" / "test.csv").write_bytes(text(TEST))
    result = run_cli("train", "--data", "same", "--runs", "runs", cwd=work, timeout=240)
    assert result.returncode == 0, result.stderr  # a run worth keeping: its numbers say what happened
    progress = [line for line in result.stdout.splitlines() if line.startswith("train L-BFGS iteration")]
    assert progress[-1].endswith("stopped short of the optimum"), progress
    (summary,) = [line for line in result.stdout.splitlines() if line.startswith("device:")]
    assert "NOT at the optimum" in summary and "fitted to the optimum" not in summary, summary
    assert re.search(r"largest gradient entry \d\.\d\de-0[1-3] \(the optimum's is at most 0\.0001\)", summary)
    (run,) = (work / "runs").iterdir()
    fit = json.loads((run / "metrics.json").read_text())["fit"]
    assert fit["converged"] is False and fit["largest_gradient"] > 1e-4 and fit["iterations"] < 1000


def complete_runs(runs: Path) -> list[Path]:
    return [p for p in runs.iterdir() if not p.name.startswith(".") and p.is_dir()
            and {"submission.csv", "model.pt", "metrics.json"} <= {f.name for f in p.iterdir()}]


def test_train_into_a_closed_pipe_keeps_the_run_and_exits_quietly(work):
    process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", *TRAIN], cwd=work, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        process.stdout.readline()  # `| head -1`: one line read, then the pipe closed
        process.stdout.close()
        stderr = process.stderr.read()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert "Traceback" not in stderr and not [l for l in stderr.splitlines() if l.startswith("digit-recognizer")], stderr
    assert process.returncode == 128 + signal.SIGPIPE
    assert len(complete_runs(work / "submissions")) == 2  # the earlier run and this one, complete


def test_train_into_a_full_stdout_keeps_the_run_and_says_so_in_one_line(work):
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "digit_recognizer", *TRAIN], cwd=work, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    result.stdout = ""
    line = the_line(result)
    assert "standard output: no space left on device" in line and "is complete and kept" in line
    assert len(complete_runs(work / "submissions")) == 2


def console_script(folder: Path) -> Path:
    """The script pip writes for the `digit-recognizer` entry point that pyproject.toml declares."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["digit-recognizer"]
    module, function = entry.split(":")
    script = folder / "digit-recognizer"
    script.write_text(f"#!{sys.executable}\nimport re\nimport sys\nfrom {module} import {function}\n"
                      f"if __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                      f"    sys.exit({function}())\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("after", [0.0, 0.03, 0.06])
def test_ctrl_c_while_the_console_script_imports_is_one_line(work, after):
    """SIGINT once the script is importing the kit (-X importtime reports argparse, the first module
    the command's import brings), and `after` seconds later: never a traceback."""
    script = console_script(work)
    before = snapshot(work)
    process = subprocess.Popen([sys.executable, "-X", "importtime", str(script), *TRAIN], cwd=work,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            seen.append(line)
            if not line or line.split("|")[-1].strip() == "argparse":
                break
        assert seen[-1].split("|")[-1].strip() == "argparse", "".join(seen)[-2000:]
        time.sleep(after)
        process.send_signal(signal.SIGINT)
        stdout, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    stderr = "".join(line for line in (*seen, *rest.splitlines(keepends=True)) if not line.startswith("import time:"))
    assert "Traceback" not in stderr, stderr
    assert snapshot(work) == before
    assert process.returncode == 130, (process.returncode, stderr)
    assert len(stderr.splitlines()) == 1 and stderr.startswith("digit-recognizer: interrupted"), stderr
