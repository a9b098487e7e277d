"""The parse cache trusts only what the kit made for this user (issue 28, item 4).

A shared cache folder (DIGIT_RECOGNIZER_CACHE pointing at a world-writable folder) let another user
plant an entry with the right name, key and checksum but its labels shifted by one: `train` trained on
it and reported a validation accuracy of 0.9675 for a model scoring 0.003; `cache` did not list it, so
`--clear` could not remove it; and an entry holding a label of 200 was used as it was.

Real files on the real file system; the other user is uid 65534 (nobody), given the planted files
with os.chown, which needs root.
"""
import hashlib
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from digit_recognizer import cache
from digit_recognizer.csv_bytes import TRAIN_COLUMNS
from digit_recognizer.local_data import load_data
from test_cache import data  # noqa: F401  (the fixture: a 20-row Kaggle-format folder)

OTHER_USER = 65534  # nobody
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="giving a file to another user (os.chown) needs root")


def shared_folder(path: Path, mode: int) -> Path:
    """A cache folder every user may write in, as a team's shared scratch folder is."""
    path.mkdir()
    os.chmod(path, mode)
    return path


def entry_bytes(values: np.ndarray, csv: Path) -> bytes:
    """An entry for `csv` holding `values`, exactly as the kit writes one (header, key and checksum right)."""
    raw = csv.read_bytes()
    key = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    values = np.ascontiguousarray(values, dtype=np.uint8)
    header = {"source": str(csv.resolve()), "key": key, "dtype": "uint8", "shape": list(values.shape),
              "sha256": hashlib.sha256(values).hexdigest()}
    return cache.MAGIC + json.dumps(header).encode() + b"\n" + values.tobytes()


def entry_path(folder: Path, csv: Path, n_columns: int) -> Path:
    raw = csv.read_bytes()
    return folder / cache.entry_name(csv, n_columns, {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})


def shifted_labels(data: Path) -> np.ndarray:
    """train.csv's true parse with every label moved on by one: a model trained on it learns nothing true."""
    truth = load_data(data, cache=False)
    table = np.column_stack([truth.train_labels, truth.train_images]).astype(np.uint8)
    table[:, 0] = (table[:, 0] + 1) % 10
    return table


def plant(folder: Path, data: Path, values: np.ndarray, uid: int = OTHER_USER) -> Path:
    planted = entry_path(folder, data / "train.csv", len(TRAIN_COLUMNS))
    planted.write_bytes(entry_bytes(values, data / "train.csv"))
    os.chown(planted, uid, uid)
    return planted


def fingerprint(path: Path) -> tuple:
    info = path.lstat()
    contents = os.readlink(path) if stat.S_ISLNK(info.st_mode) else hashlib.sha256(path.read_bytes()).hexdigest()
    return info.st_ino, info.st_uid, info.st_size, contents


def validation_accuracy(stdout: str) -> str:
    return re.search(r"validation accuracy:? ([0-9.]+)", stdout).group(1)


@needs_root
@pytest.mark.parametrize("mode", [0o777, 0o1777], ids=["world-writable", "world-writable and sticky"])
def test_another_users_planted_entry_is_ignored_said_once_listed_and_left_alone(tmp_path, data, monkeypatch, capsys,
                                                                                  mode):
    folder = shared_folder(tmp_path / "shared-cache", mode)
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    planted = plant(folder, data, shifted_labels(data))
    before = fingerprint(planted)
    truth = load_data(data, cache=False)

    monkeypatch.setattr(cache, "_warned", [])
    loaded = load_data(data)
    assert np.array_equal(loaded.train_labels, truth.train_labels)  # the truth, not the planted labels
    assert np.array_equal(loaded.train_images, truth.train_images)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"digit-recognizer: warning: parse cache {folder}: ignoring {planted.name}, "
                                  f"another user's file (nobody, uid {OTHER_USER})"), warnings
    load_data(data)  # and once only, however often it is met
    assert capsys.readouterr().err == ""
    assert fingerprint(planted) == before  # neither used nor replaced nor deleted

    # A real run on it: the same result as a run that parses, and one warning line.
    parsed = run_cli("train", "--data", str(data), "--runs", str(tmp_path / "runs"), "--no-cache")
    cached = run_cli("train", "--data", str(data), "--runs", str(tmp_path / "runs"))
    assert parsed.returncode == 0 and cached.returncode == 0, cached.stderr
    assert validation_accuracy(cached.stdout) == validation_accuracy(parsed.stdout)
    lines = [line for line in cached.stderr.splitlines() if line.startswith("digit-recognizer")]
    assert len(lines) == 1 and f"ignoring {planted.name}, another user's file" in lines[0], cached.stderr
    assert "Traceback" not in cached.stderr and fingerprint(planted) == before

    listed = run_cli("cache")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    [ignored] = [line for line in listed.stdout.splitlines() if "ignored:" in line]
    assert f"ignored: {planted.name}: another user's file (nobody, uid {OTHER_USER}): only your own entries are used; " \
           f"`cache --clear` leaves it alone" in ignored
    assert str(data / "train.csv") not in ignored  # another user's header text is not shown as the kit's
    assert listed.stdout.splitlines()[-1].startswith("1 entry, ")  # test.csv's, the user's own
    assert listed.stdout.splitlines()[-1].endswith("; 1 more file ignored (listed above)")

    cleared = run_cli("cache", "--clear")
    assert cleared.returncode == 0 and cleared.stderr == "", cleared.stderr
    assert cleared.stdout.startswith("removed 1 entry") and "1 other file(s)" in cleared.stdout, cleared.stdout
    assert "1 of them named as entries but not yours or not the kit's" in cleared.stdout, cleared.stdout
    assert [p.name for p in folder.iterdir()] == [planted.name] and fingerprint(planted) == before


@pytest.mark.parametrize("label", [200, 10], ids=["a label of 200", "a label of 10"])
def test_the_users_own_entry_with_a_right_checksum_but_a_label_no_parse_gives_is_parsed_again(data, label):
    truth = load_data(data, cache=False)
    folder = cache.cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([truth.train_labels, truth.train_images]).astype(np.uint8)
    table[7, 0] = label
    entry = plant(folder, data, table, uid=os.getuid())
    listed = run_cli("cache")
    assert f"ignored: {entry.name}: holds a label of {label} (at most 9), which no parse of a Kaggle CSV gives; " \
           f"`cache --clear` removes it" in listed.stdout, listed.stdout
    loaded = load_data(data)
    assert np.array_equal(loaded.train_labels, truth.train_labels)
    assert np.array_equal(cache.read_entry(entry, json.loads(entry.read_bytes().split(b"\n")[1])["key"],
                                           len(TRAIN_COLUMNS))[:, 0], truth.train_labels)  # rewritten from the parse
    assert run_cli("cache").stdout.splitlines()[-1].startswith("2 entries, ")


@needs_root
def test_cache_lists_every_file_a_run_would_look_at_and_why_it_ignores_each(tmp_path, data, monkeypatch):
    folder = shared_folder(tmp_path / "shared-cache", 0o777)
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    load_data(data)  # the user's two entries
    train_entry = entry_path(folder, data / "train.csv", len(TRAIN_COLUMNS))
    name = "0123456789abcdef-0123456789a{}.entry"
    others = folder / name.format(0)  # another user's, valid in every other way
    others.write_bytes(train_entry.read_bytes())
    os.chown(others, OTHER_USER, OTHER_USER)
    link = folder / name.format(1)  # a link to the user's own valid entry
    link.symlink_to(train_entry)
    damaged = folder / name.format(2)  # the user's own, one byte flipped
    raw = bytearray(train_entry.read_bytes())
    raw[-5] ^= 1
    damaged.write_bytes(raw)
    not_the_kits = folder / name.format(3)  # the user's own file that only has an entry's name
    not_the_kits.write_text("my notes\n")
    fifo = folder / name.format(4)  # a FIFO must not hang the listing
    os.mkfifo(fifo)
    older = folder / "0123456789abcdef-0123456789a5.npy"  # an older kit's entry
    np.save(older, np.zeros((2, 785), dtype=np.uint8))
    planted = [others, link, not_the_kits, fifo]
    kept = {path.name: fingerprint(path) for path in (others, link, not_the_kits)}

    listed = run_cli("cache", timeout=120)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    reasons = {}
    for line in listed.stdout.splitlines()[:-1]:
        if "ignored: " in line:
            file_name, reason = line.split("ignored: ", 1)[1].split(": ", 1)
            reasons[file_name] = reason
    assert reasons == {
        others.name: f"another user's file (nobody, uid {OTHER_USER}): only your own entries are used; `cache --clear` leaves it alone",
        link.name: "a symbolic link, not a file the kit wrote; `cache --clear` leaves it alone",
        damaged.name: "damaged: its checksum does not match its contents; `cache --clear` removes it",
        not_the_kits.name: "not made by the kit (it does not start with the kit's header); `cache --clear` leaves it alone",
        fifo.name: "not a regular file; `cache --clear` leaves it alone",
        older.name: "an older kit's entry, no longer read; `cache --clear` removes it",
    }, listed.stdout
    assert listed.stdout.splitlines()[-1].startswith("2 entries, ")
    assert listed.stdout.splitlines()[-1].endswith("; 6 more files ignored (listed above)")

    cleared = run_cli("cache", "--clear", timeout=120)
    assert cleared.returncode == 0 and cleared.stderr == "", cleared.stderr
    assert cleared.stdout.startswith("removed 4 entries"), cleared.stdout  # the two usable, the damaged, the older
    assert "4 other file(s)" in cleared.stdout and "4 of them named as entries but not yours or not the kit's" \
        in cleared.stdout, cleared.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in planted)
    assert {path.name: fingerprint(path) for path in (others, link, not_the_kits)} == kept
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and train_entry.exists() is False
