"""benchmarks/compare.py runs end to end on a small Kaggle-format folder and reports every method."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.csv_bytes import TEST_COLUMNS, TRAIN_COLUMNS
from digit_recognizer.local_data import load_data

pytest.importorskip("sklearn")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"


def small_folder(folder: Path, n_train: int = 300, n_test: int = 40) -> Path:
    sample = load_data(None)
    train = np.column_stack([sample.train_labels[:n_train], sample.train_images[:n_train]])
    for name, columns, table in (("train.csv", TRAIN_COLUMNS, train), ("test.csv", TEST_COLUMNS, sample.test_images[:n_test])):
        with open(folder / name, "w") as handle:
            handle.write(",".join(columns) + "\n")
            np.savetxt(handle, table, fmt="%d", delimiter=",")
    return folder


def compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_timing_table_on_a_small_folder(tmp_path):
    folder = small_folder(tmp_path)
    out = tmp_path / "results.json"
    result = compare("--only", "timing", "--data", str(folder), "--c-grid", "0.1", "1", "--threads", "1",
                     "--repeats", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"--data {folder}" in result.stdout  # the table says which command made it
    table = json.loads(out.read_text())["tables"]
    assert [t["name"] for t in table] == ["timing"]
    rows = {r["method"].split(",")[0].split(" ")[0]: r for r in table[0]["rows"]}
    assert set(rows) == {"kit", "sklearn", "tutorial"}
    methods = [r["method"] for r in table[0]["rows"]]
    assert methods[0].startswith("kit, cold") and methods[1].startswith("kit, warm")
    assert any("with C search (2 fits)" in m for m in methods)
    kit_accuracy = table[0]["rows"][0]["val_accuracy"]
    for row in table[0]["rows"]:
        # 300 training digits, 31 held out: softmax regression learns most of it (chance is 0.1); the
        # tutorial's recipe (sigmoid outputs, SGD at 1e-3 for 10 epochs) does worse than the kit, its point.
        if row["method"].startswith("tutorial"):
            assert 0.0 <= row["val_accuracy"] < kit_accuracy, row
        else:
            assert 0.6 < row["val_accuracy"] < 1.0, row
        assert 0.0 < row["fit_seconds"] <= row["end_to_end_seconds"]
        assert row["test_accuracy"] is None  # no solution for a user's folder
    # The cold run parsed and filled the cache; the warm run read it and rewrote nothing: the same result.
    cold, warm = table[0]["rows"][:2]
    assert (cold["details"]["parse_cache"], warm["details"]["parse_cache"]) == ("miss", "hit")
    assert warm["val_accuracy"] == cold["val_accuracy"]
    assert [s["C"] for s in table[0]["c_search"]] == [0.1, 1.0]
    # Whole processes, imports included: the kit on a quiet machine and beside a busy core, and the
    # scikit-learn script (--threads fixes the thread count, so the other wait policies are not run).
    whole = table[0]["whole_process"]
    assert list(whole["seconds"]) == ["train, kit default (OMP_WAIT_POLICY=PASSIVE), quiet",
                                      "train, kit default (OMP_WAIT_POLICY=PASSIVE), one busy core",
                                      "pandas + scikit-learn lbfgs, quiet"]
    for timing in whole["seconds"].values():
        assert 0 < timing["fastest"] <= timing["median"] and len(timing["all"]) >= 1
    assert "whole processes, imports included" in result.stdout and "x the kit's quiet train" in result.stdout


def test_cuda_without_a_gpu_is_one_line_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = compare("--device", "cuda", "--only", "timing")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compare.py: error: --device cuda"), result.stderr
