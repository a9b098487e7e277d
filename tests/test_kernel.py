"""The committed kernel, alone and without the package, trains and writes the package's own submission."""
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from digit_recognizer.bundle import KERNEL_FILE
from digit_recognizer.core.config import Config
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.core.errors import UserError
from digit_recognizer.core.paths import default_output, locate_input
from digit_recognizer.core.pictures import PICTURES
from digit_recognizer.core.pipeline import run_training

# Runs the kernel file as __main__ in a process where the package provably cannot be imported.
BLOCKED_RUN = """
import importlib.abc, runpy, sys

class NoPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "digit_recognizer" or name.startswith("digit_recognizer."):
            raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        return None

sys.meta_path.insert(0, NoPackage())
try:
    import digit_recognizer
except ModuleNotFoundError:
    print("digit_recognizer cannot be imported here")
else:
    raise SystemExit("the blocker failed: digit_recognizer was imported")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
EPOCHS, SEED = 3, 3


def kaggle_input(root: Path) -> Path:
    """/kaggle/input as newer kernels see it, holding the embedded sample's CSVs uncompressed."""
    competition = root / "competitions" / "digit-recognizer"
    competition.mkdir(parents=True)
    for name in ("train", "test"):
        (competition / f"{name}.csv").write_bytes(gzip.decompress((SAMPLE_DIR / f"{name}.csv.gz").read_bytes()))
    return competition


def run_kernel_alone(folder: Path, *args: str) -> subprocess.CompletedProcess:
    folder.mkdir()
    shutil.copy(ROOT / KERNEL_FILE, folder)
    assert [p.name for p in folder.iterdir()] == [KERNEL_FILE.name]
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, KERNEL_FILE.name, *args], cwd=folder,
                          capture_output=True, text=True, timeout=300)


def test_kernel_alone_writes_the_packages_submission(tmp_path):
    competition = kaggle_input(tmp_path / "input")
    working = tmp_path / "working"
    working.mkdir()  # on Kaggle it exists already, and may hold an earlier version's output
    (working / "submission.csv").write_text("stale\n", encoding="utf-8")

    done = run_kernel_alone(tmp_path / "kernel", "--input", str(tmp_path / "input"), "--output", str(working),
                            "--epochs", str(EPOCHS), "--seed", str(SEED))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "digit_recognizer cannot be imported here" in done.stdout
    assert f"data: {competition}" in done.stdout
    assert "device: cpu" in done.stdout and "validation accuracy: 0." in done.stdout and "timings: " in done.stdout
    assert sorted(p.name for p in working.iterdir()) == sorted(["metrics.json", "model.pt", "submission.csv", *PICTURES])

    lines = (working / "submission.csv").read_text(encoding="utf-8").splitlines()
    n_test = len(load_data(competition, cache=False).test_images)
    assert lines[0] == "ImageId,Label" and len(lines) == n_test + 1
    rows = [tuple(map(int, line.split(","))) for line in lines[1:]]
    assert [image_id for image_id, _ in rows] == list(range(1, n_test + 1))
    assert {label for _, label in rows} <= set(range(10))

    cfg = Config(epochs=EPOCHS, seed=SEED)
    (tmp_path / "package").mkdir()
    expected = run_training(cfg, load_data(competition, cache=False), tmp_path / "package")
    assert (working / "submission.csv").read_text(encoding="utf-8") == \
        (tmp_path / "package" / "submission.csv").read_text(encoding="utf-8")
    metrics = json.loads((working / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["val_accuracy"] == expected["val_accuracy"] and metrics["config"] == expected["config"]
    assert f"validation accuracy: {expected['val_accuracy']:.4f}" in done.stdout


def test_kernel_says_where_it_looked_when_there_is_no_data(tmp_path):
    empty = tmp_path / "empty"
    (empty / "digit-recognizer").mkdir(parents=True)
    (empty / "digit-recognizer" / "train.csv").write_text("label\n", encoding="utf-8")  # no test.csv beside it
    done = run_kernel_alone(tmp_path / "kernel", "--input", str(empty), "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and str(empty) in done.stderr and "train.csv and test.csv" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["competitions/digit-recognizer", "digit-recognizer"])
def test_input_is_found_in_either_kaggle_layout(tmp_path, layout):
    (tmp_path / "other-dataset").mkdir()
    (tmp_path / "other-dataset" / "train.csv").write_text("x\n")  # a train.csv alone is not the competition
    folder = tmp_path / layout
    folder.mkdir(parents=True)
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        (folder / name).write_text("x\n")
    assert locate_input(tmp_path) == folder
    assert locate_input(folder) == folder


def test_input_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        locate_input(tmp_path / "nowhere")


def test_output_defaults_to_kaggle_working_on_kaggle(monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert default_output() == Path("/kaggle/working")
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    if not Path("/kaggle/working").is_dir():
        assert default_output() == Path("output")


def test_kernel_runs_as_a_notebook_cell(monkeypatch, capsys):
    """In a notebook cell there is no __file__, and sys.argv holds Jupyter's flags, which must be ignored."""
    if Path("/kaggle/input").exists():
        pytest.skip("needs a machine without /kaggle/input, so that the kernel's search finds nothing")
    monkeypatch.setitem(sys.modules, "ipykernel", type(sys)("ipykernel"))
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/tmp/kernel-1.json"])
    code = compile((ROOT / KERNEL_FILE).read_text(encoding="utf-8"), "<cell>", "exec")
    with pytest.raises(SystemExit) as caught:
        exec(code, {"__name__": "__main__"})
    assert caught.value.code == 2
    assert "/kaggle/input: looked in it" in capsys.readouterr().err


HELP_RUN = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    print("exit", exc.code, "torch" in sys.modules, "pandas" in sys.modules, "numpy" in sys.modules)
"""


@pytest.mark.parametrize("flag, code", [("--help", 0), ("--epochs=many", 2), ("--no-such-flag", 2)])
def test_help_and_bad_flags_answer_before_torch_is_imported(tmp_path, flag, code):
    """argparse exits at the gate after the flags section, before any heavy import."""
    shutil.copy(ROOT / KERNEL_FILE, tmp_path)
    done = subprocess.run([sys.executable, "-I", "-c", HELP_RUN, KERNEL_FILE.name, flag], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == f"exit {code} False False False", done.stdout + done.stderr
    assert ("usage: digit_recognizer_kernel.py" in done.stdout) == (code == 0)
    assert code == 0 or done.stderr.splitlines()[-1].startswith("digit_recognizer_kernel.py: error: ")


def test_an_attached_gpu_whose_cuda_fails_to_start_costs_one_line_not_the_run(monkeypatch, capsys):
    """Kaggle says a GPU is there (is_available), but starting CUDA fails, as it really does in this CPU-only
    torch: the kernel says so in one line and trains on the CPU, so the run still ends with a submission."""
    import torch

    from digit_recognizer.core.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("CUDA starts on this machine")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: a GPU is attached but CUDA failed to start (")
    assert err.rstrip().endswith("); training on the CPU")


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 20.5}, "argument --epochs: invalid int value: '20.5'"),
    ({"optimizer": "adamw"}, "argument --optimizer: invalid choice: 'adamw'"),
    ({"epoch": 20}, "SETTINGS has no option 'epoch'"),
])
def test_a_bad_setting_in_the_settings_cell_is_one_line_like_a_bad_flag(capsys, settings, message):
    from digit_recognizer.core.flags import parse_kernel_args

    with pytest.raises(SystemExit) as caught:
        parse_kernel_args([], settings)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("digit_recognizer_kernel.py: error: ") and message in err


def test_settings_are_the_flags_defaults_and_a_flag_overrides_its_setting():
    from digit_recognizer.core.flags import config_from_args
    from digit_recognizer.core.flags import parse_kernel_args

    settings = {"folds": 5, "weight_decay": "auto", "refit": True, "lr": 0.01}
    cfg = config_from_args(parse_kernel_args(["--lr", "0.02"], settings))
    assert (cfg.folds, cfg.weight_decay, cfg.refit, cfg.lr) == (5, "auto", True, 0.02)


def sample_csv_lines(name: str, rows: int) -> list[str]:
    return gzip.decompress((SAMPLE_DIR / f"{name}.csv.gz").read_bytes()).decode().splitlines()[:rows + 1]


def with_cell(lines: list[str], row: int, column: int, value: str) -> list[str]:
    cells = lines[row].split(",")
    cells[column] = value
    return [*lines[:row], ",".join(cells), *lines[row + 1:]]


TRAIN_LINES, TEST_LINES = sample_csv_lines("train", 50), sample_csv_lines("test", 5)
NOT_DIGITS = "not a Kaggle digit CSV with rows of integers 0-255"
COLUMNS = "expected exactly the columns label,...,pixel783, in that order"
# What the kernel's one parse (core/data.read_csv) refuses in Kaggle's CSVs: file, bytes, fragment of the line.
BAD_CSVS = {
    "a wrong column": ("train.csv", "\n".join([TRAIN_LINES[0].replace("pixel5,", "pixelx,"), *TRAIN_LINES[1:]]),
                       COLUMNS),
    "a repeated column": ("train.csv", "\n".join([TRAIN_LINES[0].replace("pixel6,", "pixel5,"), *TRAIN_LINES[1:]]),
                          COLUMNS),
    "train.csv given as test.csv": ("test.csv", "\n".join(TRAIN_LINES), "the columns pixel0,...,pixel783"),
    "a pixel of 256": ("train.csv", "\n".join(with_cell(TRAIN_LINES, 3, 100, "256")), NOT_DIGITS),
    "a negative pixel": ("test.csv", "\n".join(with_cell(TEST_LINES, 2, 5, "-1")), NOT_DIGITS),
    "a pixel of 5000 digits": ("train.csv", "\n".join(with_cell(TRAIN_LINES, 3, 100, "9" * 5000)), NOT_DIGITS),
    "a word for a pixel": ("train.csv", "\n".join(with_cell(TRAIN_LINES, 3, 100, "abc")), NOT_DIGITS),
    "an empty cell": ("train.csv", "\n".join(with_cell(TRAIN_LINES, 3, 100, "")), NOT_DIGITS),
    "a label of 12": ("train.csv", "\n".join(with_cell(TRAIN_LINES, 3, 0, "12")), "a label above 9"),
    "a short row": ("train.csv", "\n".join([*TRAIN_LINES[:4], TRAIN_LINES[4].rsplit(",", 1)[0], *TRAIN_LINES[5:]]),
                    NOT_DIGITS),
    "a long row": ("train.csv", "\n".join([*TRAIN_LINES[:4], TRAIN_LINES[4] + ",0", *TRAIN_LINES[5:]]), NOT_DIGITS),
    # pandas would take a first row one cell longer than the header as the index, and so drop a column.
    "every row one cell too long": ("train.csv", "\n".join([TRAIN_LINES[0], *(r + ",0" for r in TRAIN_LINES[1:])]),
                                    COLUMNS),
    "a header only": ("train.csv", TRAIN_LINES[0] + "\n", NOT_DIGITS),
    "an empty file": ("test.csv", "", NOT_DIGITS),
    "UTF-16": ("train.csv", "\n".join(TRAIN_LINES).encode("utf-16"), NOT_DIGITS),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_a_bad_csv_is_one_line_naming_the_file_and_what_was_expected(tmp_path, capsys, case):
    from digit_recognizer.core.main import main

    name, content, fragment = BAD_CSVS[case]
    data = tmp_path / "input"
    data.mkdir()
    (data / "train.csv").write_text("\n".join(TRAIN_LINES) + "\n")
    (data / "test.csv").write_text("\n".join(TEST_LINES) + "\n")
    (data / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["--input", str(data), "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err and captured.err.count("\n") == 1
    assert captured.err.startswith(f"digit_recognizer_kernel.py: error: {data / name}: ") and fragment in captured.err
