"""The kernel's script form, alone and without the package, trains and writes the package's own submission;
its settings, command line, data search and device choice."""
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digit_recognizer import kernel
from digit_recognizer.kernel import Config, default_output, find_data, main, parse_command_line, run
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.notebook import SCRIPT_NAME, SOURCE

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
SEED = 3


def kaggle_input(root: Path) -> Path:
    """/kaggle/input as newer kernels see it, holding the embedded sample's CSVs uncompressed."""
    competition = root / "competitions" / "digit-recognizer"
    competition.mkdir(parents=True)
    for name in ("train", "test"):
        (competition / f"{name}.csv").write_bytes(gzip.decompress((SAMPLE_DIR / f"{name}.csv.gz").read_bytes()))
    return competition


def run_kernel_alone(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """The source file, as a push sends its script form, run alone in a folder of its own."""
    folder.mkdir()
    shutil.copy(SOURCE, folder / SCRIPT_NAME)
    assert [p.name for p in folder.iterdir()] == [SCRIPT_NAME]
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, SCRIPT_NAME, *args], cwd=folder,
                          capture_output=True, text=True, timeout=300)


def test_kernel_alone_writes_the_packages_submission(tmp_path):
    competition = kaggle_input(tmp_path / "input")
    working = tmp_path / "working"
    working.mkdir()  # on Kaggle it exists already, and may hold an earlier version's output
    (working / "submission.csv").write_text("stale\n", encoding="utf-8")

    done = run_kernel_alone(tmp_path / "kernel", "--input", str(tmp_path / "input"), "--output", str(working),
                            "--seed", str(SEED))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "digit_recognizer cannot be imported here" in done.stdout
    assert f"data: {competition}" in done.stdout
    assert "device: cpu" in done.stdout and "validation accuracy: 0." in done.stdout and "timings: " in done.stdout
    assert sorted(p.name for p in working.iterdir()) == sorted(["metrics.json", "model.pt", "submission.csv",
                                                                 *kernel.PICTURES])

    lines = (working / "submission.csv").read_text(encoding="utf-8").splitlines()
    n_test = len(load_data(competition, cache=False).test_images)
    assert lines[0] == "ImageId,Label" and len(lines) == n_test + 1
    rows = [tuple(map(int, line.split(","))) for line in lines[1:]]
    assert [image_id for image_id, _ in rows] == list(range(1, n_test + 1))
    assert {label for _, label in rows} <= set(range(10))

    expected = run(Config(seed=SEED), load_data(competition, cache=False), tmp_path / "package")
    assert (working / "submission.csv").read_bytes() == (tmp_path / "package" / "submission.csv").read_bytes()
    metrics = json.loads((working / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["val_accuracy"] == expected.val_accuracy and metrics["config"] == expected.config
    assert metrics["format"] == 2 and metrics["fit"]["converged"] is True
    assert f"validation accuracy: {expected.val_accuracy:.4f}" in done.stdout


def test_kernel_says_where_it_looked_when_there_is_no_data(tmp_path):
    empty = tmp_path / "empty"
    (empty / "digit-recognizer").mkdir(parents=True)
    (empty / "digit-recognizer" / "train.csv").write_text("label\n", encoding="utf-8")  # no test.csv beside it
    done = run_kernel_alone(tmp_path / "kernel", "--input", str(empty), "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"{SCRIPT_NAME}: error: {empty}: looked in it")
    assert "train.csv and test.csv" in done.stderr


@pytest.mark.parametrize("layout", ["competitions/digit-recognizer", "digit-recognizer"])
def test_input_is_found_in_either_kaggle_layout(tmp_path, layout):
    (tmp_path / "other-dataset").mkdir()
    (tmp_path / "other-dataset" / "train.csv").write_text("x\n")  # a train.csv alone is not the competition
    folder = tmp_path / layout
    folder.mkdir(parents=True)
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        (folder / name).write_text("x\n")
    assert find_data(tmp_path) == folder
    assert find_data(folder) == folder


def test_input_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(kernel.UserError, match="no such folder"):
        find_data(tmp_path / "nowhere")


def test_output_defaults_to_kaggle_working_on_kaggle(monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert default_output() == Path("/kaggle/working")
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    if not Path("/kaggle/working").is_dir():
        assert default_output() == Path("output")


def test_the_script_run_inside_a_notebook_cell_ignores_jupyters_flags(monkeypatch, capsys):
    """The script form executed in a Jupyter kernel (Kaggle's "script in a notebook"): sys.argv holds
    Jupyter's flags, which must not be taken for the kernel's."""
    if Path("/kaggle/input").exists():
        pytest.skip("needs a machine without /kaggle/input, so that the kernel's search finds nothing")
    monkeypatch.setitem(sys.modules, "ipykernel", type(sys)("ipykernel"))
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/tmp/kernel-1.json"])
    code = compile(SOURCE.read_text(encoding="utf-8"), "<cell>", "exec")
    with pytest.raises(SystemExit) as caught:
        exec(code, {"__name__": "__main__"})
    assert caught.value.code == 2
    assert "/kaggle/input: no such folder" in capsys.readouterr().err


@pytest.mark.parametrize("flag, code", [("--help", 0), ("--folds=many", 2), ("--no-such-flag", 2), ("--epochs", 2)])
def test_help_and_bad_flags_of_the_script(tmp_path, flag, code):
    shutil.copy(SOURCE, tmp_path / SCRIPT_NAME)
    done = subprocess.run([sys.executable, "-I", SCRIPT_NAME, flag], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == code, done.stderr
    assert (f"usage: {SCRIPT_NAME}" in done.stdout) == (code == 0)
    assert code == 0 or done.stderr.splitlines()[-1].startswith(f"{SCRIPT_NAME}: error: ")


def test_an_attached_gpu_whose_cuda_fails_to_start_costs_one_line_not_the_run(monkeypatch, capsys):
    """Kaggle says a GPU is there (is_available), but starting CUDA fails, as it really does in this CPU-only
    torch: the kernel says so in one line and trains on the CPU, so the run still ends with a submission."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA starts on this machine")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert kernel.training_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: a GPU is attached but CUDA failed to start (")
    assert err.rstrip().endswith("); training on the CPU")


@pytest.mark.parametrize("settings, message", [
    ({"refit": "False"}, "refit must be True or False, got 'False'"),
    ({"folds": True}, "folds must be 0 (one hold-out split) or an integer from 2 to 100, got True"),
    ({"folds": 5.0}, "folds must be 0 (one hold-out split) or an integer from 2 to 100, got 5.0"),
    ({"weight_decay": "0.01"}, "weight_decay must be 'scaled', 'auto' or a number from 0 to 10000 (beyond it every "
                               "weight stays zero), got '0.01'"),
    ({"features": "hog"}, "features must be one of pixels, deskew, normalised, orientations, sqrt-orientations, "
                          "got 'hog'"),
    ({"epochs": 20}, "SETTINGS has no setting 'epochs'; the settings are seed, val_fraction, weight_decay, "
                     "features, refit, folds, device"),
])
def test_a_bad_setting_in_the_settings_cell_is_one_line_naming_it_and_what_it_takes(monkeypatch, capsys, settings,
                                                                                     message):
    monkeypatch.setattr(sys, "argv", [SCRIPT_NAME])
    assert main([], settings) == 2
    captured = capsys.readouterr()
    where = "" if message.startswith("SETTINGS") else "SETTINGS: "
    assert captured.out == "" and captured.err == f"{SCRIPT_NAME}: error: {where}{message}\n"
    with pytest.raises(kernel.UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Config.from_settings(settings)  # as the notebook's settings step says it, in its one line


def test_settings_are_the_flags_defaults_and_a_flag_overrides_its_setting():
    settings = {"folds": 5, "weight_decay": "auto", "refit": True}
    _, config = parse_command_line(["--weight-decay", "0.01"], settings)
    assert (config.folds, config.weight_decay, config.refit) == (5, 0.01, True)
    with pytest.raises(kernel.SettingError) as refused:  # a negative number is the flag's value, refused
        parse_command_line(["--weight-decay", "-1e-3"], {})
    assert kernel.as_flag(refused.value).startswith("--weight-decay must be 'scaled', 'auto' or a number from 0 to 10000")


def sample_csv_lines(name: str, rows: int) -> list[str]:
    return gzip.decompress((SAMPLE_DIR / f"{name}.csv.gz").read_bytes()).decode().splitlines()[:rows + 1]


def with_cell(lines: list[str], row: int, column: int, value: str) -> list[str]:
    cells = lines[row].split(",")
    cells[column] = value
    return [*lines[:row], ",".join(cells), *lines[row + 1:]]


TRAIN_LINES, TEST_LINES = sample_csv_lines("train", 50), sample_csv_lines("test", 5)
NOT_DIGITS = "not a Kaggle digit CSV with rows of integers 0-255"
COLUMNS = "expected exactly the columns label,...,pixel783, in that order"
# What the kernel's one parse (read_csv) refuses in Kaggle's CSVs: file, bytes, fragment of the line.
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
def test_a_bad_csv_is_one_line_naming_the_file_and_what_was_expected(tmp_path, monkeypatch, capsys, case):
    monkeypatch.setattr(sys, "argv", [SCRIPT_NAME])
    name, content, fragment = BAD_CSVS[case]
    data = tmp_path / "input"
    data.mkdir()
    (data / "train.csv").write_text("\n".join(TRAIN_LINES) + "\n")
    (data / "test.csv").write_text("\n".join(TEST_LINES) + "\n")
    (data / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["--input", str(data), "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err and captured.err.count("\n") == 1
    assert captured.err.startswith(f"{SCRIPT_NAME}: error: {data / name}: ") and fragment in captured.err
