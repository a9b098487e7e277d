"""The parse cache never changes a result, never leaks a file, and stays under its cap (issues 11 and 12)."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from digit_recognizer import cache
from digit_recognizer.local_data import load_data
from digit_recognizer.scale import write_kaggle_size
from test_bad_input import TEST, TRAIN_20, text


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_bytes(text(TRAIN_20))
    (folder / "test.csv").write_bytes(text(TEST))
    return folder


def cache_files() -> list[Path]:
    return sorted(cache.cache_dir().iterdir()) if cache.cache_dir().is_dir() else []


def entries() -> list[Path]:
    return [p for p in cache_files() if p.suffix == ".entry"]


def test_a_csv_edited_in_place_keeping_size_and_mtime_is_read_again(data):
    first = load_data(data)
    assert len(entries()) == 2 and np.array_equal(load_data(data).train_images, first.train_images)
    path = data / "train.csv"
    stat = path.stat()
    raw = bytearray(path.read_bytes())
    at = raw.index(b"\n", raw.index(b"\n") + 1) + 1  # the first cell of the second data row: its label
    old_label = raw[at]
    raw[at] = ord("7") if old_label != ord("7") else ord("3")
    with open(path, "r+b") as handle:  # in place: same inode, same size
        handle.write(raw)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the modification time set back
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    again = load_data(data)
    assert again.train_labels[1] == raw[at] - ord("0") != first.train_labels[1]
    assert np.array_equal(again.train_labels, load_data(data, cache=False).train_labels)


@pytest.mark.parametrize("damage", ["a flipped pixel byte", "truncated", "a wrong shape", "not an entry"])
def test_a_damaged_entry_is_parsed_again_not_used(data, damage):
    truth = load_data(data, cache=False)
    load_data(data)
    entry = max(entries(), key=lambda p: p.stat().st_size)  # train.csv's
    raw = bytearray(entry.read_bytes())
    if damage == "a flipped pixel byte":
        raw[-100] ^= 0x01  # same size; only the checksum can tell
    elif damage == "truncated":
        raw = raw[:-1]
    elif damage == "a wrong shape":
        raw = raw.replace(b'"shape": [200, 785]', b'"shape": [785, 200]')
    else:
        raw = bytearray(b"\x93NUMPY" + bytes(100))
    entry.write_bytes(raw)
    loaded = load_data(data)
    assert np.array_equal(loaded.train_images, truth.train_images)
    assert np.array_equal(loaded.train_labels, truth.train_labels)
    assert np.array_equal(load_data(data).train_images, truth.train_images)  # and the entry was rewritten
    assert len(entries()) == 2


def test_no_temporary_file_is_left_and_stale_ones_are_swept(data):
    folder = cache.cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=60)  # its pid names no process now: the writer of `stale` and `fresh` is gone
    name = f".0123456789abcdef-0123456789ab.entry.{ended.pid}-"
    stale, fresh = folder / f"{name}aaaaaa.tmp", folder / f"{name}bbbbbb.tmp"
    stale.write_bytes(b"left by a killed run")
    fresh.write_bytes(b"being written by a live run")
    two_minutes_ago = time.time() - 120
    os.utime(stale, (two_minutes_ago, two_minutes_ago))
    load_data(data)
    assert not stale.exists() and fresh.exists()
    assert [p for p in cache_files() if p.suffix == ".tmp"] == [fresh]


def test_an_unwritable_cache_costs_one_warning_line_and_nothing_else(tmp_path, data):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be\n")
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "runs"),
                     env={"DIGIT_RECOGNIZER_CACHE": str(blocked / "cache")})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("digit-recognizer:")]
    assert len(warnings) == 1 and warnings[0].startswith("digit-recognizer: warning: parse cache"), result.stderr
    assert "continuing without it" in warnings[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("home", ["", "/", None, "unset, no password entry"])
def test_without_a_usable_home_the_cache_never_lands_in_root_or_here(monkeypatch, home):
    monkeypatch.delenv("DIGIT_RECOGNIZER_CACHE")
    monkeypatch.setenv("HOME", home) if home in ("", "/") else monkeypatch.delenv("HOME", raising=False)
    if home is not None and home.startswith("unset"):
        monkeypatch.setattr(os, "getuid", lambda: 2**31 - 7)  # a user the password database does not know
    folder = cache.cache_dir()
    assert folder.is_absolute() and folder.parent != Path("/") and Path("/.cache") not in folder.parents
    if home is None:  # the password entry's home
        assert folder == Path(os.path.expanduser("~")) / ".cache" / "digit-recognizer"
    else:
        assert folder.name == f"digit-recognizer-cache-{os.getuid()}" and folder.parent == Path(tempfile.gettempdir())


def cached_sources() -> list[str]:
    """The CSV each cache entry holds, as `digit-recognizer cache` names it."""
    return sorted(cache.describe_header(cache.examine(p).header).split(" (")[0] for p in entries())


def after_the_last_write(folder: Path) -> None:
    """Return once the file system's clock reads later than every entry's time.

    File times come from the kernel's coarse clock (a few milliseconds a tick): a use in the same tick
    as the last write would tie with it, and a tie says nothing about which was used last.
    """
    newest = max(p.stat().st_mtime_ns for p in entries())
    probe = folder / "clock-probe"
    for _ in range(100000):
        probe.touch()
        if probe.stat().st_mtime_ns > newest:
            return
    raise AssertionError("the file system's clock did not move")


def test_the_cache_stays_under_its_cap_and_drops_the_least_recently_used(tmp_path, monkeypatch):
    """20 runs on 20 different data folders of an eighth of Kaggle's size, under a cap that holds two of them,
    with the first folder read again after each: it is used most recently, so it is never the one dropped
    (first-in-first-out would drop it on the third load).

    (An eighth keeps the test near ten seconds on two shared cores; the cap is scaled with the data.)
    """
    one = write_kaggle_size(tmp_path / "source", 42000 // 8, 28000 // 8)
    load_data(one)
    entry_pair = sum(p.stat().st_size for p in entries())
    cap = 2 * entry_pair + 1000  # room for two folders' entries, not three
    monkeypatch.setenv(cache.MAX_BYTES_ENV, str(cap))
    first = tmp_path / "data0"
    shutil.copytree(one, first)
    load_data(first)
    for p in entries():
        if str(one) in cache.describe_header(cache.examine(p).header):
            p.unlink()  # only data0's two entries from here on
    first_csvs = [str((first / name).resolve()) for name in ("test.csv", "train.csv")]
    for k in range(1, 20):
        folder = tmp_path / f"data{k}"
        shutil.copytree(one, folder)
        loaded = load_data(folder)
        assert loaded.train_images.shape == (42000 // 8, 784)
        total = sum(p.stat().st_size for p in entries())
        assert total <= cap, (k, total, cap)
        newest = [str((folder / name).resolve()) for name in ("test.csv", "train.csv")]
        assert cached_sources() == sorted(first_csvs + newest), k  # data0 survived; data{k-1} was dropped
        inodes = {p: p.stat().st_ino for p in entries()}
        after_the_last_write(tmp_path)
        load_data(first)  # read again from the cache, nothing rewritten: now the most recently used
        assert {p: p.stat().st_ino for p in entries()} == inodes
    listed = run_cli("cache", env={cache.MAX_BYTES_ENV: str(cap)})
    assert listed.returncode == 0 and listed.stdout.count(str(tmp_path / "data19")) == 2, listed.stdout
    assert listed.stdout.count(str(first) + "/") == 2 and "data18/" not in listed.stdout, listed.stdout
    assert "4 entries" in listed.stdout.splitlines()[-1]
    cleared = run_cli("cache", "--clear")
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 4 entries"), cleared.stdout
    assert cache_files() == []
    assert run_cli("cache").stdout.startswith("0 entries, 0.0 MB")


def test_a_bad_cap_is_one_warning_and_the_default(monkeypatch, capsys):
    monkeypatch.setenv(cache.MAX_BYTES_ENV, "lots")
    monkeypatch.setattr(cache, "_warned", [])
    assert cache.max_bytes() == cache.DEFAULT_MAX_BYTES
    assert cache.max_bytes() == cache.DEFAULT_MAX_BYTES
    assert capsys.readouterr().err.count("warning") == 1


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "T"


def test_ctrl_c_while_an_entry_is_written_leaves_no_temporary_file(tmp_path):
    """Ctrl-C provably lands while an entry is being written.

    The run is stopped (SIGSTOP) as soon as its temporary file appears; only if the file is still there
    once it has stopped (the write has not been renamed into place) does Ctrl-C go in, and the run
    continues with it pending. No new entry afterwards shows the write was cut short; a stop that came
    too late, or a rename already under way, is not counted and the run is tried again on a fresh cache.
    """
    data = write_kaggle_size(tmp_path / "data", 42000 // 4, 28000 // 4)
    for attempt in range(10):
        folder = tmp_path / f"cache{attempt}"
        process = subprocess.Popen([sys.executable, "-m", "digit_recognizer", "train", "--data", str(data), "--out",
                                    str(tmp_path / "runs")], env={**os.environ, cache.CACHE_ENV: str(folder)},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            landed = interrupt_during_a_write(process, folder)
            if landed is None:
                process.kill()
            stderr = process.communicate(timeout=120)[1]
        finally:
            process.kill()
        if landed is None or {p.name for p in folder.glob("*.entry")} != landed:
            continue  # the signal did not land inside a write: try again
        assert process.returncode == 130 and "Traceback" not in stderr, stderr
        assert stderr.splitlines()[-1].startswith("digit-recognizer: interrupted; no run folder was left behind")
        assert [p.name for p in folder.iterdir() if p.suffix == ".tmp"] == []
        assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
        return
    pytest.fail("in 10 runs the signal never landed inside an entry's write")


def interrupt_during_a_write(process: subprocess.Popen, folder: Path) -> set[str] | None:
    """SIGINT while a temporary entry file is being written: the entries there were then; None if missed."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if folder.is_dir() and any(p.suffix == ".tmp" for p in folder.iterdir()):
            process.send_signal(signal.SIGSTOP)
            while not stopped(process.pid):
                time.sleep(0.0005)
            writing = any(p.suffix == ".tmp" for p in folder.iterdir())
            entries_then = {p.name for p in folder.glob("*.entry")}
            if writing:
                process.send_signal(signal.SIGINT)  # pending until the run continues, mid-write
            process.send_signal(signal.SIGCONT)
            return entries_then if writing else None
        time.sleep(0.0002)
    return None
