"""Every user mistake from issue 6, through the real command in a subprocess.

Each case must end with exit status 2, exactly one line on stderr starting `digit-recognizer: error:`
that names the file (or flag) and the line/column where there is one, no traceback, and a working
folder (the data and a submissions/ holding an earlier run) exactly as it was before. Submission
mistakes go through score, validate (which lists every problem) and submit (which must refuse them
before it connects). Variants that are not mistakes (CRLF, BOM, Kaggle's zip, .csv.gz) must load.
"""
import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import past_run_id, run_cli
from kaggle_fixtures import kaggle, user_env  # noqa: F401  (the stand-in Kaggle, for submit)
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.errors import UserError
from digit_recognizer.run_folders import RUN_ID_PATTERN, run_folder
from digit_recognizer.submission_check import check_submission

PREFIX = "digit-recognizer: error: "


def sample_lines(name: str) -> list[str]:
    return gzip.decompress((SAMPLE_DIR / name).read_bytes()).decode().splitlines()


def few_of_each(lines: list[str], per_digit: int) -> list[str]:
    """The header and the first `per_digit` sample rows of each digit."""
    taken = {d: [] for d in "0123456789"}
    for line in lines[1:]:
        if len(taken[line[0]]) < per_digit:
            taken[line[0]].append(line)
    return [lines[0], *(line for d in "0123456789" for line in taken[d])]


TRAIN = few_of_each(sample_lines("train.csv.gz"), 3)  # 30 rows: loads fine, but too few to split at 0.1
TRAIN_20 = few_of_each(sample_lines("train.csv.gz"), 20)  # 200 rows: enough for a real run
TEST = sample_lines("test.csv.gz")[:11]
SOLUTION = ["ImageId,Label", *(f"{i},{i % 10}" for i in range(1, 11))]


def text(lines: list[str], end: str = "\n") -> bytes:
    return "".join(line + end for line in lines).encode()


def set_cell(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """A copy with data row `row` (1-based; file line row + 1) holding `value` in `column`."""
    columns = lines[0].split(",")
    cells = lines[row].split(",")
    cells[columns.index(column)] = value
    return [*lines[:row], ",".join(cells), *lines[row + 1:]]


def drop_column(lines: list[str], index: int) -> list[str]:
    return [",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in lines]


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def train_with(files: dict[str, bytes | None]) -> callable:
    """A case that trains on data/ after writing `files` there (file name -> bytes, or None to delete)."""
    def setup(work: Path) -> list[str]:
        for name, data in files.items():
            path = work / "data" / name
            path.unlink() if data is None else path.write_bytes(data)
        return ["train", "--data", "data", "--out", "submissions"]
    return setup


def train_on(path: str, data: bytes | None = None, flags: tuple = ()) -> callable:
    """A case that trains with --data PATH (written first when `data` is given) and extra flags."""
    def setup(work: Path) -> list[str]:
        if data is not None:
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_bytes(data)
        return ["train", "--data", path, "--out", "submissions", *flags]
    return setup


def flags(*extra: str) -> callable:
    return train_on("data", flags=extra)


def score(submission: bytes | None, solution: bytes = text(SOLUTION)) -> callable:
    def setup(work: Path) -> list[str]:
        (work / "solution.csv").write_bytes(solution)
        if submission is not None:
            (work / "sub.csv").write_bytes(submission)
        return ["score", "sub.csv", "--solution", "solution.csv"]
    return setup


def submission(rows: list[str], header: str = "ImageId,Label") -> bytes:
    return text([header, *rows])


GOOD_ROWS = SOLUTION[1:]
TR, TE = "data/train.csv", "data/test.csv"
CASES = {
    # train.csv / test.csv: missing, empty, header only
    "train missing": (train_with({"train.csv": None}), [f"{TR}: no such file"]),
    "test missing": (train_with({"test.csv": None}), [f"{TE}: no such file"]),
    "data folder missing": (train_on("nowhere"), ["nowhere: no such folder"]),
    "zip not unpacked": (train_with({"train.csv": None, "test.csv": None, "digit-recognizer.zip": zipped({})}),
                         [f"{TR}: no such file", "(unzip data/digit-recognizer.zip there, or pass the zip itself"]),
    "train empty": (train_with({"train.csv": b""}), [f"{TR}: the file is empty"]),
    "test empty": (train_with({"test.csv": b"\n\n"}), [f"{TE}: the file is empty"]),
    "train header only": (train_with({"train.csv": text(TRAIN[:1])}), [f"{TR}: has a header but no data rows"]),
    "test header only": (train_with({"test.csv": text(TEST[:1], "\r\n")}), [f"{TE}: has a header but no data rows"]),
    # columns: wrong, missing, extra, duplicated, out of order, train/test swapped
    "wrong column": (train_with({"train.csv": text([TRAIN[0].replace("pixel5,", "pixelx,"), *TRAIN[1:]])}),
                     [f"{TR}: header:", "'pixelx'", "'pixel5'"]),
    "missing column": (train_with({"train.csv": text(drop_column(TRAIN, 785 - 1))}),
                       [f"{TR}: header: missing column 'pixel783'"]),
    "extra column": (train_with({"test.csv": text([TEST[0] + ",extra", *(r + ",0" for r in TEST[1:])])}),
                     [f"{TE}: header: unexpected column 'extra'"]),
    "duplicated column": (train_with({"train.csv": text([TRAIN[0].replace("pixel6,", "pixel5,"), *TRAIN[1:]])}),
                          [f"{TR}: header: column 'pixel5' appears more than once"]),
    "columns out of order": (train_with({"train.csv": text([TRAIN[0].replace("pixel1,pixel2,", "pixel2,pixel1,"),
                                                            *TRAIN[1:]])}),
                             [f"{TR}: header: column 3 is 'pixel2', expected 'pixel1'"]),
    "train given as test": (train_with({"test.csv": text(TRAIN)}), [f"{TE}: header: unexpected column 'label'"]),
    "test given as train": (train_with({"train.csv": text(TEST)}), [f"{TR}: header: missing column 'label'"]),
    "binary file": (train_with({"train.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"}), [f"{TR}: header:"]),
    # cells
    "non-numeric pixel": (train_with({"train.csv": text(set_cell(TRAIN, 3, "pixel100", "abc"))}),
                          [f"{TR}: line 4, column pixel100: expected an integer 0-255, got 'abc'"]),
    "empty cell": (train_with({"train.csv": text(set_cell(TRAIN, 5, "pixel0", ""))}),
                   [f"{TR}: line 6, column pixel0: empty cell"]),
    "NaN": (train_with({"test.csv": text(set_cell(TEST, 2, "pixel783", "NaN"))}),
            [f"{TE}: line 3, column pixel783:", "'NaN'"]),
    "negative pixel": (train_with({"train.csv": text(set_cell(TRAIN, 2, "pixel3", "-1"))}),
                       [f"{TR}: line 3, column pixel3:", "'-1'"]),
    "pixel above 255": (train_with({"test.csv": text(set_cell(TEST, 1, "pixel400", "256"))}),
                        [f"{TE}: line 2, column pixel400: expected an integer 0-255, got 256"]),
    "non-integer pixel": (train_with({"train.csv": text(set_cell(TRAIN, 9, "pixel9", "12.5"))}),
                          [f"{TR}: line 10, column pixel9:", "'12.5'"]),
    "full-width digit": (train_with({"train.csv": text(set_cell(TRAIN, 1, "pixel9", "\uff11"))}),
                         [f"{TR}: line 2, column pixel9:"]),
    "label above 9": (train_with({"train.csv": text(set_cell(TRAIN, 30, "label", "10"))}),
                      [f"{TR}: line 31, column label: expected an integer 0-9, got 10"]),
    "negative label": (train_with({"train.csv": text(set_cell(TRAIN, 1, "label", "-1"))}),
                       [f"{TR}: line 2, column label:", "'-1'"]),
    "non-integer label": (train_with({"train.csv": text(set_cell(TRAIN, 4, "label", "3.0"))}),
                          [f"{TR}: line 5, column label:", "'3.0'"]),
    # rows
    "ragged row, short": (train_with({"train.csv": text([*TRAIN[:4], TRAIN[4].rsplit(",", 1)[0], *TRAIN[5:]])}),
                          [f"{TR}: line 5: has 784 fields, expected 785"]),
    "ragged row, long": (train_with({"test.csv": text([*TEST[:2], TEST[2] + ",0", *TEST[3:]])}),
                         [f"{TE}: line 3: has 785 fields, expected 784"]),
    "lone carriage return": (train_with({"train.csv": text(TRAIN[:3]) + TRAIN[3].encode() + b"\r" + text(TRAIN[4:])}),
                             [f"{TR}: line 4: a carriage return without a line feed"]),
    "old Mac line endings": (train_with({"test.csv": text(TEST, "\r")}),
                             [f"{TE}: line 1: a carriage return without a line feed"]),
    "a class absent": (train_with({"train.csv": text([r for r in TRAIN if not r.startswith("7,")])}),
                       [f"{TR}: no examples of digit 7;"]),
    "one-row train": (train_with({"train.csv": text(TRAIN[:2])}), [f"{TR}: no examples of digits 1, 2, 3"]),
    # archives and single files
    "unknown single file": (train_on("data/mnist.csv", text(TRAIN)),
                            ["data/mnist.csv: --data takes the folder", "not a single file"]),
    "zip missing": (train_on("digit-recognizer.zip"), ["digit-recognizer.zip: no such file"]),
    "zip corrupt": (train_on("digit-recognizer.zip", b"PK\x03\x04 not really"),
                    ["digit-recognizer.zip: not a readable zip file"]),
    "zip without test.csv": (train_on("digit-recognizer.zip", zipped({"train.csv": text(TRAIN)})),
                             ["digit-recognizer.zip: the zip holds no test.csv"]),
    "zip with a bad cell": (train_on("digit-recognizer.zip", zipped({"train.csv": text(set_cell(TRAIN, 2, "pixel7", "x")),
                                                                     "test.csv": text(TEST)})),
                            ["digit-recognizer.zip:train.csv: line 3, column pixel7:"]),
    "gz corrupt": (train_with({"train.csv": None, "train.csv.gz": b"not gzip at all"}), [f"{TR}.gz: cannot be read"]),
    "gz truncated": (train_with({"test.csv": None, "test.csv.gz": gzip.compress(text(TEST))[:-20]}),
                     [f"{TE}.gz: cannot be read"]),
    # flags
    "--out is a file": (flags("--out", "submissions/notes.txt"), ["submissions/notes.txt: not a folder"]),
    "val-fraction 0": (flags("--val-fraction", "0"), ["--val-fraction must be a number between 0 and 1"]),
    "val-fraction 1": (flags("--val-fraction", "1"), ["--val-fraction must be a number between 0 and 1"]),
    "val-fraction nan": (flags("--val-fraction", "nan"), ["--val-fraction must be a number between 0 and 1"]),
    "val-fraction leaves a class without validation": (flags(),
                                                       ["--val-fraction 0.1 leaves digit 0", "no validation example"]),
    "val-fraction leaves a class without training": (flags("--val-fraction", "0.9", "--out", "fresh/runs"),
                                                     ["leaves digit 0", "no training example"]),
    "folds not a number": (flags("--folds", "ten"), ["train: argument --folds: invalid int value: 'ten'"]),
    "folds more than a digit has": (flags("--folds", "4"), ["--folds 4: digit 0 has only 3 examples in train.csv"]),
    "weight decay negative": (flags("--weight-decay", "-1"), ["--weight-decay must be 'scaled', 'auto' or a number"]),
    "weight decay infinite": (flags("--weight-decay", "inf"), ["--weight-decay must be 'scaled', 'auto' or a number"]),
    "unknown features": (flags("--features", "hog"), ["argument --features: invalid choice: 'hog'"]),
    "an option that left the kit": (flags("--epochs", "2"), ["--epochs no longer exists"]),
    "score: solution malformed": (score(submission(GOOD_ROWS), b"ImageId,Label\n1,x\n"),
                                  ["solution.csv: line 2: Label 'x'"]),
}

# Submission mistakes, each checked by score, validate and submit (which must refuse before any upload).
SUBMISSIONS = {
    "wrong header": (submission(GOOD_ROWS, "id,label"),
                     ["sub.csv: line 1: header is 'id,label', expected exactly 'ImageId,Label'"]),
    "extra column": (text(["ImageId,Label,Confidence", *(r + ",0.9" for r in GOOD_ROWS)]),
                     ["sub.csv: line 1: header is 'ImageId,Label,Confidence'"]),
    "empty": (b"", ["sub.csv: the file is empty"]),
    "missing": (None, ["sub.csv: no such file"]),
    "header only": (submission([]), ["sub.csv: has 0 rows, expected 10"]),
    "too few rows": (submission(GOOD_ROWS[:-1]), ["sub.csv: has 9 rows, expected 10"]),
    "too many rows": (submission([*GOOD_ROWS, "11,1"]), ["sub.csv: has 11 rows, expected 10"]),
    "ImageId missing, another out of range": (submission([*GOOD_ROWS[:3], *GOOD_ROWS[4:], "11,1"]),
                                              ["sub.csv: ImageId 11 is outside 1..10"]),
    "ImageId duplicated": (submission([*GOOD_ROWS[:3], "3,3", *GOOD_ROWS[4:]]), ["sub.csv: ImageId 3 appears more than once"]),
    "ImageId 0": (submission(["0,0", *GOOD_ROWS[1:]]), ["sub.csv: ImageId 0 is outside 1..10"]),
    "ImageId negative": (submission(["-1,0", *GOOD_ROWS[1:]]), ["sub.csv: line 2: ImageId '-1' is not a positive integer"]),
    "label 10": (submission([*GOOD_ROWS[:4], "5,10", *GOOD_ROWS[5:]]), ["sub.csv: line 6: Label '10' is not an integer 0-9"]),
    "label decimal": (submission([*GOOD_ROWS[:4], "5,5.0", *GOOD_ROWS[5:]]), ["sub.csv: line 6: Label '5.0'"]),
    "label superscript": (submission([*GOOD_ROWS[:4], "5,\u00b2", *GOOD_ROWS[5:]]), ["sub.csv: line 6: Label '\u00b2'"]),
    "label empty": (submission([*GOOD_ROWS[:4], "5,", *GOOD_ROWS[5:]]), ["sub.csv: line 6: Label is empty"]),
    "ragged row": (submission([*GOOD_ROWS[:4], "5", *GOOD_ROWS[5:]]), ["sub.csv: line 6: has 1 field, expected 2"]),
}


EARLIER_RUN = past_run_id("abc123")  # what earlier_run makes


def earlier_run(root: Path) -> None:
    run = root / EARLIER_RUN
    run.mkdir(parents=True)
    (run / "submission.csv").write_text(text(SOLUTION).decode())
    (run / "metrics.json").write_text('{"val_accuracy": 0.9}\n')
    (run / "model.pt").write_bytes(bytes(range(256)))
    (root / "notes.txt").write_text("mine\n")


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root (hidden ones included), with each file's hash."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working folder as a user has it: valid data/ and a submissions/ holding an earlier run."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_bytes(text(TRAIN))
    (tmp_path / "data" / "test.csv").write_bytes(text(TEST))
    earlier_run(tmp_path / "submissions")
    return tmp_path


def assert_one_line_error(result, fragments: list[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert result.returncode == 2, result.returncode
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_user_mistake(work: Path, case: str):
    setup, fragments = CASES[case]
    args = setup(work)
    before = snapshot(work)
    result = run_cli(*args, cwd=work)
    assert_one_line_error(result, fragments)
    assert snapshot(work) == before  # nothing written, nothing removed: the earlier run is intact


@pytest.mark.parametrize("case", list(SUBMISSIONS))
def test_submission_mistake(work: Path, case: str, kaggle):
    content, fragments = SUBMISSIONS[case]
    args = score(content)(work)
    before = snapshot(work)
    line = assert_one_line_error(run_cli(*args, cwd=work), fragments)

    validated = run_cli("validate", "sub.csv", "--data", "data", cwd=work)  # lists every problem, one a line
    problems = validated.stderr.splitlines()
    same = line.removeprefix(PREFIX).split(" (one per ")[0]
    if case == "missing":  # a file that cannot be read is the command's error, as for score (issue 20)
        assert validated.returncode == 2 and problems == [line], problems
    else:
        assert validated.returncode == 1 and "Traceback" not in validated.stderr
        # the same problem first; each names the file it compared with (solution.csv, or data's test.csv)
        assert problems[0].split(" (one per ")[0] == same and all(p.startswith("sub.csv") for p in problems), problems

    # Against the stand-in Kaggle with working credentials: submit refuses on the file alone, and not one
    # request reaches Kaggle (not even the day's limits).
    submitted = run_cli("submit", "sub.csv", "--data", "data", cwd=work, env=kaggle.env)
    refusal = submitted.stderr.splitlines()
    assert submitted.returncode == 2 and "Traceback" not in submitted.stderr
    assert refusal[0].startswith(PREFIX + same) and all(r.startswith(PREFIX + "sub.csv") for r in refusal), refusal
    assert "submitted" not in submitted.stdout
    assert kaggle.requests == []
    assert snapshot(work) == before


def test_device_cuda_without_cuda(work: Path):
    if pytest.importorskip("torch").cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    before = snapshot(work)
    result = run_cli("train", "--data", "data", "--out", "submissions", "--device", "cuda", cwd=work)
    assert_one_line_error(result, ["--device cuda: CUDA is not available here"])
    assert snapshot(work) == before


def test_a_failed_run_leaves_no_folder_behind(tmp_path: Path):
    """Whatever stops a run (a mistake found late, Ctrl-C), --out is as it was, even folders made for it."""
    with pytest.raises(UserError):
        with run_folder(tmp_path / "fresh" / "runs") as temp:
            (temp / "submission.csv").write_text("ImageId,Label\n")
            raise UserError("found late")
    assert list(tmp_path.iterdir()) == []
    earlier_run(tmp_path / "submissions")
    before = snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with run_folder(tmp_path / "submissions") as temp:
            (temp / "model.pt").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert snapshot(tmp_path) == before


def test_debug_shows_the_traceback(work: Path):
    result = run_cli("--debug", "train", "--data", "nowhere", cwd=work)
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserError" in result.stderr


# Variants a Kaggle user produces that are not mistakes: each loads to the same arrays.
def _accepted(work: Path) -> dict[str, Path]:
    variants = {}
    for name, train, test in (("crlf", text(TRAIN, "\r\n"), text(TEST, "\r\n")),
                              ("bom", b"\xef\xbb\xbf" + text(TRAIN), b"\xef\xbb\xbf" + text(TEST, "\r\n")),
                              ("blank lines", text(TRAIN) + b"\n\n", text(TEST)[:-1])):
        (work / name).mkdir()
        (work / name / "train.csv").write_bytes(train)
        (work / name / "test.csv").write_bytes(test)
        variants[name] = work / name
    (work / "gz").mkdir()
    (work / "gz" / "train.csv.gz").write_bytes(gzip.compress(text(TRAIN)))
    (work / "gz" / "test.csv.gz").write_bytes(gzip.compress(text(TEST)))
    variants["gz folder"] = work / "gz"
    variants["train.csv.gz path"] = work / "gz" / "train.csv.gz"
    variants["train.csv path"] = work / "data" / "train.csv"
    zip_path = work / "digit-recognizer.zip"
    # Kaggle's download: both CSVs (plus sample_submission.csv) at the top of the zip.
    zip_path.write_bytes(zipped({"train.csv": text(TRAIN, "\r\n"), "test.csv": text(TEST),
                                 "sample_submission.csv": text(SOLUTION)}))
    variants["kaggle zip"] = zip_path
    nested = work / "nested.zip"
    nested.write_bytes(zipped({"digit-recognizer/train.csv": text(TRAIN), "digit-recognizer/test.csv": text(TEST)}))
    variants["zip with a folder"] = nested
    return variants


def test_accepted_variants_load_the_same_arrays(work: Path):
    plain = load_data(work / "data", cache=False)
    assert plain.train_images.shape == (30, 784) and plain.test_images.shape == (10, 784)
    for name, path in _accepted(work).items():
        data = load_data(path, cache=False)
        assert np.array_equal(data.train_images, plain.train_images), name
        assert np.array_equal(data.train_labels, plain.train_labels), name
        assert np.array_equal(data.test_images, plain.test_images), name


def test_kaggle_zip_trains_end_to_end(work: Path):
    (work / "digit-recognizer.zip").write_bytes(zipped({"train.csv": b"\xef\xbb\xbf" + text(TRAIN_20, "\r\n"),
                                                        "test.csv": text(TEST, "\r\n")}))
    before = snapshot(work / "submissions")
    result = run_cli("train", "--data", "digit-recognizer.zip", "--out", "submissions", cwd=work)
    assert result.returncode == 0, result.stderr
    after = snapshot(work / "submissions")
    assert {k: v for k, v in after.items() if k in before} == before
    runs = [p for p in (work / "submissions").iterdir() if p.name not in (EARLIER_RUN, "notes.txt")]
    assert len(runs) == 1 and RUN_ID_PATTERN.fullmatch(runs[0].name), runs  # one new run, named as the kit names runs
    labels, problems = check_submission(runs[0] / "submission.csv", len(TEST) - 1)
    assert problems == [] and len(labels) == 10


def test_check_submission_lists_every_problem(tmp_path: Path):
    path = tmp_path / "sub.csv"
    path.write_text("ImageId,Label\n1,1\n2,x\n3,3\n5,\u0665\n")
    labels, problems = check_submission(path, 4)
    assert labels is None
    assert problems == [f"{path}: line 3: Label 'x' is not an integer 0-9",
                        f"{path}: line 5: Label '\u0665' is not an integer 0-9"]
    path.write_text("ImageId,Label\n1,1\n2,2\n4,4\n")
    assert check_submission(path, 4)[1] == [f"{path}: has 3 rows, expected 4 (one per test image)",
                                            f"{path}: ImageId 3 is missing; expected every ImageId 1..4"]
    path.write_text("id,label\n1,1\n1,2\n")
    assert check_submission(path, 2)[1] == [f"{path}: line 1: header is 'id,label', expected exactly 'ImageId,Label'",
                                            f"{path}: ImageId 1 appears more than once"]


def test_check_submission_accepts_kaggle_variants(tmp_path: Path):
    """A BOM, CRLF, rows in any order and a missing final newline are all fine for Kaggle."""
    path = tmp_path / "sub.csv"
    path.write_bytes(b"\xef\xbb\xbfImageId,Label\r\n3,7\r\n1,5\r\n2,6")
    labels, problems = check_submission(path, 3)
    assert problems == [] and labels.tolist() == [5, 6, 7]
