"""The training kernel and the CLI on real data: parsing, split, model, submission, full runs."""
import gzip
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli
from digit_recognizer.csv_bytes import PIXELS, TRAIN_COLUMNS, TRAIN_LIMITS, parse_table
from digit_recognizer.csv_diagnosis import diagnose
from digit_recognizer import kernel
from digit_recognizer.errors import UserError
from digit_recognizer.kernel import Config, predict, run, save_model, stratified_split
from digit_recognizer.local_data import SAMPLE_DIR, load_data, table_reader
from digit_recognizer.saved_model import load_model
from digit_recognizer.submission_check import check_submission, score

HEADER = ",".join(TRAIN_COLUMNS)
SAMPLE_TEST_MARKER = "<!-- sample-test-accuracy -->"


def submission_text(labels: np.ndarray) -> str:
    """Kaggle's submission format, written out here independently of the kit."""
    return "ImageId,Label\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels.tolist(), start=1))


def train_csv(rows: list[list[int]], header: str = HEADER, newline: str = "\n") -> bytes:
    lines = [header, *(",".join(map(str, r)) for r in rows)]
    return (newline.join(lines) + newline).encode()


def some_rows(n: int = 3) -> list[list[int]]:
    rng = np.random.default_rng(n)
    return [[i % 10, *rng.integers(0, 256, 784).tolist()] for i in range(n)]


def test_parse_exact_values_with_crlf_and_bom():
    rows = some_rows()
    raw = b"\xef\xbb\xbf" + train_csv(rows, newline="\r\n")
    table = parse_table("train.csv", raw, TRAIN_COLUMNS, TRAIN_LIMITS)
    assert table.dtype == np.uint8 and table.shape == (3, 785)
    np.testing.assert_array_equal(table, np.array(rows, dtype=np.uint8))


@pytest.mark.parametrize("mutate, expected", [
    (lambda rows, h: (rows, h.replace("pixel3,", "")), "missing column 'pixel3'"),
    (lambda rows, h: (rows, h + ",extra"), "unexpected column 'extra'"),
    (lambda rows, h: (rows, h.replace("pixel1,pixel2", "pixel2,pixel1")), "column 3 is 'pixel2', expected 'pixel1'"),
    (lambda rows, h: (rows, h.replace("pixel1,", "pixel0,")), "'pixel0' appears more than once"),
    (lambda rows, h: ([r if i != 1 else [*r[:5], "x", *r[6:]] for i, r in enumerate(rows)], h), "line 3, column pixel4: expected an integer 0-255, got 'x'"),
    (lambda rows, h: ([r if i != 2 else [*r[:7], "", *r[8:]] for i, r in enumerate(rows)], h), "line 4, column pixel6: empty cell"),
    (lambda rows, h: ([r if i != 0 else [*r[:1], 256, *r[2:]] for i, r in enumerate(rows)], h), "line 2, column pixel0: expected an integer 0-255, got 256"),
    (lambda rows, h: ([r if i != 1 else [12, *r[1:]] for i, r in enumerate(rows)], h), "line 3, column label: expected an integer 0-9, got 12"),
    (lambda rows, h: ([r if i != 1 else r[:-1] for i, r in enumerate(rows)], h), "line 3: has 784 fields, expected 785"),
])
def test_parse_rejections_name_line_and_column(mutate, expected):
    rows, header = mutate(some_rows(), HEADER)
    with pytest.raises(UserError) as error:
        parse_table("data/train.csv", train_csv(rows, header), TRAIN_COLUMNS, TRAIN_LIMITS, diagnose=diagnose)
    message = str(error.value)
    assert message.startswith("data/train.csv: ") and expected in message and "\n" not in message


def test_parse_rejects_empty_file_and_header_only():
    with pytest.raises(UserError, match="the file is empty"):
        parse_table("t.csv", b"", TRAIN_COLUMNS, TRAIN_LIMITS)
    with pytest.raises(UserError, match="no data rows"):
        parse_table("t.csv", (HEADER + "\n").encode(), TRAIN_COLUMNS, TRAIN_LIMITS)


def test_sample_is_real_and_kaggle_shaped():
    data = load_data(None)
    assert data.train_images.shape == (4000, 784) and data.test_images.shape == (1000, 784)
    assert np.bincount(data.train_labels, minlength=10).tolist() == [400] * 10
    solution = check_submission(SAMPLE_DIR / "solution.csv.gz", 1000)
    assert solution[1] == [] and np.bincount(solution[0]).tolist() == [100] * 10


def cached_array(entry):
    """The array a parse-cache entry holds (its format: cache.py)."""
    from digit_recognizer.cache import examine, read_entry

    header = examine(entry).header
    return read_entry(entry, header["key"], header["shape"][1])


def test_cache_hit_stale_and_corrupt(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIGIT_RECOGNIZER_CACHE", str(cache))
    path = tmp_path / "train.csv"
    path.write_bytes(train_csv(some_rows(3)))
    load_table = table_reader(cache=True)
    first = load_table(path, TRAIN_COLUMNS, TRAIN_LIMITS)
    [cached] = cache.iterdir()
    np.testing.assert_array_equal(cached_array(cached), first)
    cached.write_bytes(b"not an npy file")  # corrupt: must be ignored and rewritten
    np.testing.assert_array_equal(load_table(path, TRAIN_COLUMNS, TRAIN_LIMITS), first)
    path.write_bytes(train_csv(some_rows(5)))  # changed file: new size and mtime, new parse
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert load_table(path, TRAIN_COLUMNS, TRAIN_LIMITS).shape == (5, 785)
    [replaced] = cache.iterdir()  # the new version's entry took the old one's place
    assert replaced != cached and cached_array(replaced).shape == (5, 785)


def test_stratified_split_is_stratified_disjoint_and_seeded():
    labels = load_data(None).train_labels
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val], minlength=10).tolist() == [40] * 10
    again, _ = stratified_split(labels, 0.1, seed=3)
    other, _ = stratified_split(labels, 0.1, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    with pytest.raises(kernel.UserError, match="leaves digit 0 .400 examples in train.csv. with no validation example"):
        stratified_split(labels, 0.001, seed=3)


def test_model_round_trip_predicts_identically(tmp_path):
    data = load_data(None)
    record = run(Config(weight_decay=0.01), data, tmp_path)
    model, saved = load_model(tmp_path / "model.pt")
    assert saved["config"]["weight_decay"] == 0.01 and saved["val_accuracy"] == record.val_accuracy
    labels = predict(model, torch.from_numpy(data.test_images)).argmax(1).numpy()
    assert (tmp_path / "submission.csv").read_text() == submission_text(labels)


def test_submission_format_and_score(tmp_path):
    labels = np.array([3, 1, 4, 1, 5])
    path = tmp_path / "s.csv"
    path.write_text(submission_text(labels))
    assert path.read_text().splitlines()[:3] == ["ImageId,Label", "1,3", "2,1"]
    read, problems = check_submission(path, 5)
    assert problems == [] and read.tolist() == labels.tolist()
    truth = tmp_path / "truth.csv"
    truth.write_text(submission_text(np.array([3, 1, 4, 1, 9])))
    assert score(path, truth) == pytest.approx(0.8)


def test_same_seed_same_predictions(tmp_path):
    """The seed picks the hold-out split, and with it the training images: the same seed, the same model."""
    data = load_data(None)
    run(Config(seed=7), data, tmp_path / "a")
    run(Config(seed=7), data, tmp_path / "b")
    run(Config(seed=8), data, tmp_path / "c")
    a, b, c = ((tmp_path / x / "submission.csv").read_bytes() for x in "abc")
    assert a == b and a != c


def test_full_run_on_the_sample_as_a_user_would(tmp_path):
    result = run_cli("train", "--out", str(tmp_path / "submissions"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-4].startswith("validation accuracy: ")
    assert lines[-3].startswith("Kaggle scores only predictions for its own 28,000 test images, not this run on the "
                                "embedded sample")
    assert lines[-2].endswith(" -m digit_recognizer download") and lines[-1].endswith(" -m digit_recognizer train --data data")
    submission = Path(lines[-5].removeprefix("submission: "))
    assert submission.is_file() and submission.parent.parent == tmp_path / "submissions"
    text = submission.read_text().splitlines()
    assert text[0] == "ImageId,Label" and len(text) == 1001
    assert {"submission.csv", "metrics.json", "model.pt"} <= {p.name for p in submission.parent.iterdir()}
    scored = run_cli("score", str(submission), cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    # The README's stated accuracy, to within one of the sample's 1,000 test images.
    assert float(scored.stdout.split()[1]) == pytest.approx(readme_sample_test_accuracy(), abs=0.001 + 1e-9), \
        (scored.stdout, "update the README's <!-- sample-test-accuracy --> sentence when the model changes")


def readme_sample_test_accuracy() -> float:
    """The number in the README's one sentence marked <!-- sample-test-accuracy -->."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(SAMPLE_TEST_MARKER) == 1, f"README.md needs exactly one {SAMPLE_TEST_MARKER}"
    sentence = text.split(SAMPLE_TEST_MARKER)[1].split(". ")[0].split(".\n")[0]
    found = re.findall(r"\b0\.\d{3,4}\b", sentence)
    assert len(found) == 1, f"the sentence after {SAMPLE_TEST_MARKER} should state one accuracy: {sentence!r}"
    return float(found[0])


def trained(tmp_path: Path, *flags: str) -> tuple[Path, dict, str]:
    """`digit-recognizer train FLAGS` on the sample: its run folder, metrics.json and stdout."""
    result = run_cli("train", "--runs", str(tmp_path / "runs"), *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = Path(result.stdout.split("run folder: ")[1].splitlines()[0])
    return run, json.loads((run / "metrics.json").read_text()), result.stdout


def test_refit_end_to_end(tmp_path):
    """--refit fits the optimum again on all 4,000 images after validating; predict reproduces its submission."""
    run_folder, metrics, stdout = trained(tmp_path, "--refit")
    assert metrics["config"]["refit"] is True and metrics["refit"] == {"examples": 4000}
    assert "refit: fitting the model to the optimum by L-BFGS" in stdout
    assert "predictions from a refit to the optimum on train+validation (4000 images)" in stdout
    held_out = run(Config(), load_data(None), tmp_path / "held-out")
    assert held_out.val_accuracy == metrics["val_accuracy"]  # validated before the refit, by the same fit
    assert (tmp_path / "held-out" / "submission.csv").read_bytes() != (run_folder / "submission.csv").read_bytes()
    scored = run_cli("score", str(run_folder / "submission.csv"), cwd=tmp_path)
    assert scored.returncode == 0 and float(scored.stdout.split()[1]) > 0.97, scored.stdout
    predicted = run_cli("predict", "--model", str(run_folder / "model.pt"), "--out", str(tmp_path / "again.csv"))
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "again.csv").read_bytes() == (run_folder / "submission.csv").read_bytes()  # the refit model


def test_kaggle_size_folder_trains(kaggle_size, tmp_path):
    result = run_cli("train", "--data", str(kaggle_size), "--out", str(tmp_path), "--features", "deskew")
    assert result.returncode == 0, result.stderr
    [run] = tmp_path.iterdir()
    rows = (run / "submission.csv").read_text().splitlines()
    assert len(rows) == 28001 and rows[-1].startswith("28000,")


def test_predict_from_a_saved_model_needs_only_test_csv(tmp_path):
    run_folder = tmp_path / "run"
    run(Config(features="pixels", weight_decay=0.03), load_data(None), run_folder)
    only_test = tmp_path / "only_test"
    only_test.mkdir()
    (only_test / "test.csv.gz").write_bytes((SAMPLE_DIR / "test.csv.gz").read_bytes())
    done = run_cli("predict", "--model", str(run_folder / "model.pt"), "--data", str(only_test), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (run_folder / "predict-submission.csv").read_bytes() == (run_folder / "submission.csv").read_bytes()
    again = run_cli("predict", "--model", str(run_folder / "model.pt"), "--data", str(only_test), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_piped_train_prints_plain_progress_lines_and_no_carriage_returns(tmp_path):
    result = run_cli("train", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr
    progress = [line for line in result.stdout.splitlines() if line.startswith("train")]
    assert progress[0] == "train: fitting the model to the optimum by L-BFGS (stops when every gradient entry " \
                          "is at most 0.0001)"
    # The last line of the fit is always printed: the iteration it stopped at, its gradient, and that it is done.
    assert re.fullmatch(r"train L-BFGS iteration \d+: largest gradient \d\.\d\de-0[5-9]; \d+ s elapsed, done",
                        progress[-1]), progress


@pytest.mark.parametrize("flags, expected", [
    (["--seed", "-1"], "--seed must be an integer from 0 to 2**64-1, got -1"),
    (["--weight-decay", "-1e-3"], "--weight-decay must be 'scaled', 'auto' or a number from 0 to 10000"),
    (["--weight-decay", "1e39"], "--weight-decay must be 'scaled', 'auto' or a number from 0 to 10000"),
    (["--val-fraction", "nan"], "--val-fraction must be a number between 0 and 1 (exclusive), got nan"),
    (["--folds", "101"], "--folds must be 0 (one hold-out split) or an integer from 2 to 100, got 101"),
    (["--epochs", "10"], "--epochs no longer exists: the model is fitted to the optimum of its loss"),
])
def test_unusable_settings_stop_with_one_line_and_no_run_folder(tmp_path, flags, expected):
    result = run_cli("train", "--out", str(tmp_path / "runs"), *flags)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digit-recognizer: error: " + expected), result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_terminal_still_gets_the_progress_bar(tmp_path):
    import pty
    import subprocess
    import sys
    import threading

    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    terminal = []

    def read():  # drain the terminal as the bar is drawn, so the child never blocks on a full buffer
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed
                return
            if not chunk:
                return
            terminal.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    done = subprocess.run([sys.executable, "-m", "digit_recognizer", "train", "--out", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=follower, env=env, timeout=300)
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    drawn = b"".join(terminal)
    assert done.returncode == 0
    assert b"train:" in drawn and b"\r" in drawn and b"largest gradient" in drawn, drawn  # tqdm drew its bar
    assert b"L-BFGS iteration" not in done.stdout  # and no plain progress lines
