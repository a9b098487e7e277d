"""Whole-process timings at Kaggle's size: `train` and `train --folds 5 --weight-decay auto`, on each device.

What a user waits for, interpreter start-up and imports included: each command runs as its own process
(`python -m digit_recognizer ...`) on a Kaggle-format folder (default: 42,000/28,000 rows built from the
embedded sample by scale.write_kaggle_size; --data takes Kaggle's own), after one untimed run that fills
the parse cache. Each is timed `--repeats` times (auto: `--auto-repeats`) and reported as its fastest and
median, and as a ratio to a bare `python -c "import torch"` timed the same way, the floor any PyTorch
program pays. With a GPU, every command runs with `--device cpu` and `--device cuda` side by side.

    python benchmarks/kaggle_size.py                      # about 5 minutes on 2 CPU cores
    python benchmarks/kaggle_size.py --data data --out results.json

The machine should be quiet: the cores other processes kept busy just before the timings start is
printed, with a warning when it was not near zero (timings on a busy machine say little). (The load
average is no use here: it lags by a minute, and after the runs it counts the benchmark's own.)
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {"train": [], "train --folds 5 --weight-decay auto": ["--folds", "5", "--weight-decay", "auto"]}


def whole_process(argv: list[str], repeats: int, env: dict) -> list[float]:
    """Seconds of each of `repeats` runs of argv as a whole process; a failed run stops the benchmark."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - started)
        if done.returncode:
            raise SystemExit(f"kaggle_size.py: error: {shlex.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return seconds


def devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def busy_cores(seconds: float = 3.0) -> float:
    """How many cores were busy, on average, over the next `seconds` (Linux's /proc/stat; nan elsewhere)."""
    def totals() -> tuple[int, int]:
        ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # all, and idle + iowait

    try:
        all_before, idle_before = totals()
        time.sleep(seconds)
        all_after, idle_after = totals()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return (os.cpu_count() or 1) * (1 - (idle_after - idle_before) / max(1, all_after - all_before))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a Kaggle-format folder (default: Kaggle-size stand-in data)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of train, and of import torch (default: 5)")
    parser.add_argument("--auto-repeats", type=int, default=3, help="runs of the auto command (default: 3)")
    parser.add_argument("--out", type=Path, help="also write the raw seconds as JSON here")
    args = parser.parse_args()
    env = {**os.environ, "TQDM_DISABLE": "1"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="digit-kaggle-size-") as tmp:
        env["DIGIT_RECOGNIZER_CACHE"] = str(Path(tmp) / "cache")  # its own cache, warmed below
        data = args.data
        if data is None:
            from digit_recognizer.scale import write_kaggle_size

            print("building Kaggle-size stand-in data from the embedded sample (not timed) ...", flush=True)
            data = write_kaggle_size(Path(tmp) / "kaggle-size")
        busy = busy_cores()  # measured last, just before the first timed run
        floor = whole_process([sys.executable, "-c", "import torch"], args.repeats, env)
        rows.append(("python -c 'import torch'", "-", floor))
        for device in devices():
            for name, flags in COMMANDS.items():
                argv = [sys.executable, "-m", "digit_recognizer", "train", "--data", str(data),
                        "--runs", str(Path(tmp) / "runs"), "--device", device, *flags]
                whole_process(argv, 1, env)  # untimed: fills the parse cache, as a second run of a user's finds it
                repeats = args.auto_repeats if flags else args.repeats
                print(f"timing {name} on {device} ({repeats} runs) ...", flush=True)
                rows.append((name, device, whole_process(argv, repeats, env)))
    floor_median = statistics.median(floor)
    print(f"\n{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; data: "
          f"{args.data or 'Kaggle-size stand-in (42,000 / 28,000 rows)'}")
    print(f"cores kept busy by other processes just before the timings: {busy:.2f}")
    if not busy < 0.2:
        print("warning: the machine was not quiet; these timings say little")
    print("\n| command (whole process) | device | runs | fastest s | median s | median / import torch |")
    print("|---|---|---|---|---|---|")
    for name, device, seconds in rows:
        median = statistics.median(seconds)
        print(f"| {name} | {device} | {len(seconds)} | {min(seconds):.2f} | {median:.2f} | "
              f"{median / floor_median:.1f}x |")
    # Item 2 of issue 29 asks for auto within 30 s; this ratio says what auto costs over the default run.
    for device in sorted({device for _, device, _ in rows if device != "-"}):
        by_name = {name: statistics.median(seconds) for name, d, seconds in rows if d == device}
        print(f"{device}: auto takes {by_name['train --folds 5 --weight-decay auto'] / by_name['train']:.1f}x "
              "the default train (medians)")
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu_model(), "busy_cores_before": busy,
                                        "rows": [{"command": n, "device": d, "seconds": s} for n, d, s in rows]},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
