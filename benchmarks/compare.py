"""Time and score this kit against two peers on the same data, the same split and the same machine.

The peers:
  sklearn   scikit-learn LogisticRegression (lbfgs, multinomial) on pixels/255, C chosen on the
            validation split, CSVs read with pandas.read_csv.
  tutorial  the classic PyTorch tutorial recipe, faithfully: raw 0-255 pixels, a per-row Dataset
            over a pandas DataFrame, a collate_fn, DataLoader(batch_size=128, shuffle=True),
            Linear(784, 10) + sigmoid into CrossEntropyLoss, SGD lr 1e-3, 10 epochs.

Two tables, each printed with the command line that produced it:
  accuracy  the embedded sample's real digits: train on its train.csv (4,000 rows, 10% held out by
            the kit's stratified split), score on its test.csv against solution.csv.gz.
  timing    a Kaggle-format folder (--data, or 42,000/28,000 rows built from the sample by shifted
            copies). Shifted copies of one digit land on both sides of the split there, so its
            held-out accuracy is inflated; read accuracy from the first table.

Usage: pip install -e '.[bench]'; python benchmarks/compare.py [--help]
"""
import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

# The kit's progress lines would interleave with the tables; they cost well under a
# millisecond per refresh, so switching them off does not flatter the kit's timings.
os.environ.setdefault("TQDM_DISABLE", "1")

# Before torch loads, as in the kit's own commands: its OpenMP threads then sleep instead of spinning.
import digit_recognizer  # noqa: F401,E402
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from digit_recognizer import cache, kernel
from digit_recognizer.errors import UserError
from digit_recognizer.kernel import Config, settings_changed, stratified_split, training_device
from digit_recognizer.local_data import SAMPLE_DIR, load_data
from digit_recognizer.scale import write_kaggle_size
from digit_recognizer.submission_check import score

C_GRID = [0.01, 0.1, 1.0, 10.0]
# On the kit's standardised features the useful C are smaller (its pixels have unit scale, not 1/255).
FEATURE_C_GRID = [0.003, 0.01, 0.03, 0.1]
# Cross-validated kit runs in the accuracy table: the flags as a user types them.
CV_VARIANTS = [{"folds": 5}, {"folds": 5, "weight_decay": "auto"}]
MAX_ITER = 1000
TUTORIAL = {"batch_size": 128, "lr": 1e-3, "epochs": 10}


@dataclass
class Case:
    """One Kaggle-format folder to run every method on."""
    name: str
    title: str
    folder: Path
    solution: Path | None = None  # true test labels, when known: adds a test-accuracy column

    def csv(self, stem: str) -> Path:
        plain = self.folder / f"{stem}.csv"
        return plain if plain.is_file() else self.folder / f"{stem}.csv.gz"


@dataclass
class Row:
    method: str
    val_accuracy: float
    fit_seconds: float
    end_to_end_seconds: float
    test_accuracy: float | None = None
    details: dict = field(default_factory=dict)


class Stopwatch:
    """Named stages in order; the device is synchronised before each reading so GPU work is counted."""

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.stages: dict[str, float] = {}
        self.last = self._now()

    def _now(self) -> float:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self, name: str) -> float:
        now = self._now()
        self.stages[name] = self.stages.get(name, 0.0) + now - self.last
        self.last = now
        return self.stages[name]


# --- (a) this kit, as `digit-recognizer train` runs it -------------------------------------------

def cache_entries() -> dict[str, int]:
    """The parse cache's entries now, each file's name and inode."""
    return {path.name: stat.st_ino for path, stat in cache.entries(cache.cache_dir())}


def run_kit(case: Case, cfg: Config, work: Path) -> list[Row]:
    """Two runs as a user sees them: the first on an empty parse cache, the second reusing it."""
    previous = os.environ.get("DIGIT_RECOGNIZER_CACHE")
    os.environ["DIGIT_RECOGNIZER_CACHE"] = str(work / f"{case.name}-kit-cache")  # fresh and empty
    rows = []
    try:
        for label, what in (("cold", "first run: parse CSVs, fill cache"), ("warm", "second run: cached parse")):
            out = work / f"{case.name}-kit-{label}"
            out.mkdir()
            cached_before = cache_entries()
            start = time.perf_counter()
            data = load_data(case.folder, cache=True)
            load_seconds = time.perf_counter() - start
            # A hit: the load found entries and rewrote none (a rewritten entry is a new file, a new inode).
            parse_cache = "hit" if cached_before and cache_entries() == cached_before else "miss"
            record = kernel.run(cfg, data, out, {"load": load_seconds})
            total = time.perf_counter() - start
            timings = record.timings_seconds
            rows.append(Row(f"kit, {label} ({what})", record.val_accuracy, timings["fit"], total,
                            _test_accuracy(case, out / "submission.csv"),
                            {"timings_seconds": timings, "device": record.device, "parse_cache": parse_cache,
                             "fit": record.fit, "config": record.config}))
    finally:
        if previous is None:
            os.environ.pop("DIGIT_RECOGNIZER_CACHE", None)
        else:
            os.environ["DIGIT_RECOGNIZER_CACHE"] = previous
    return rows


def run_kit_cv(case: Case, cfg: Config, work: Path, variants: list[dict]) -> list[Row]:
    """The kit with --folds (and --weight-decay auto): held-out acc is the CV mean, its error in the name."""
    rows = []
    for changes in variants:
        out = work / f"{case.name}-kit-cv-{len(rows)}"
        out.mkdir()
        start = time.perf_counter()
        data = load_data(case.folder, cache=True)
        record = kernel.run(replace(cfg, **changes), data, out, {"load": time.perf_counter() - start})
        total = time.perf_counter() - start
        cv = record.cv
        flags = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in changes.items())
        rows.append(Row(f"kit {flags} (CV {cv['accuracy']:.4f} ± {cv['stderr']:.4f}, wd {cv['weight_decay']:g})",
                        cv["accuracy"], record.timings_seconds["fit"], total,
                        _test_accuracy(case, out / "submission.csv"), {"cv": cv, "config": record.config}))
    return rows


def run_sklearn_on_kit_features(case: Case, cfg: Config, work: Path, grid: list[float]) -> tuple[Row, list[dict]]:
    """scikit-learn's converged lbfgs on exactly the kit's features (cfg.features, standardised on the training split).

    The reference the kit's own optimiser should reach: the loss is convex, so at the same L2
    strength both find the same optimum; C is chosen on the same validation split.
    """
    from sklearn.linear_model import LogisticRegression

    from digit_recognizer.kernel import SoftmaxRegression, image_features, standardiser

    data = load_data(case.folder, cache=True)
    train_idx, val_idx = stratified_split(data.train_labels, cfg.val_fraction, cfg.seed)
    model = SoftmaxRegression(cfg.features)
    with torch.no_grad():
        prepared = image_features(torch.from_numpy(data.train_images), cfg.features)
        mean, std = standardiser(prepared[torch.from_numpy(train_idx)], cfg.features)
        model.mean.copy_(mean)
        model.std.copy_(std)
        features = prepared.sub_(mean).div_(std).numpy()
        test_features = model.standardised(image_features(torch.from_numpy(data.test_images), cfg.features)).numpy()
    labels = data.train_labels
    searched = []
    for c in grid:
        clock = time.perf_counter()
        fitted = LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER).fit(features[train_idx], labels[train_idx])
        iterations = int(np.max(fitted.n_iter_))
        searched.append({"C": c, "val_accuracy": float((fitted.predict(features[val_idx]) == labels[val_idx]).mean()),
                         "fit_seconds": time.perf_counter() - clock, "iterations": iterations,
                         "converged": iterations < MAX_ITER, "model": fitted,
                         "equivalent_weight_decay": 1 / (c * len(train_idx))})
    best = max(searched, key=lambda x: x["val_accuracy"])
    submission = work / f"{case.name}-sklearn-features-submission.csv"
    predicted = best["model"].predict(test_features)
    pd.DataFrame({"ImageId": np.arange(1, len(predicted) + 1), "Label": predicted}).to_csv(submission, index=False)
    for entry in searched:
        del entry["model"]
    row = Row(f"sklearn lbfgs on the kit's {cfg.features} features, C={best['C']:g}", best["val_accuracy"], best["fit_seconds"],
              sum(x["fit_seconds"] for x in searched), _test_accuracy(case, submission),
              {"C": best["C"], "search": searched})
    return row, searched


# --- (b) scikit-learn -------------------------------------------------------------------------------

def run_sklearn(case: Case, cfg: Config, work: Path, grid: list[float], fixed_c: float) -> tuple[list[Row], list[dict]]:
    """Read with pandas, fit lbfgs for each C in `grid` (or only `fixed_c`), keep the best on validation."""
    from sklearn.linear_model import LogisticRegression

    watch = Stopwatch()
    train = pd.read_csv(case.csv("train"))
    test = pd.read_csv(case.csv("test"))
    watch.lap("read")
    labels = train["label"].to_numpy()
    pixels = train.drop(columns="label").to_numpy() / 255.0
    test_pixels = test.to_numpy() / 255.0
    train_idx, val_idx = stratified_split(labels, cfg.val_fraction, cfg.seed)
    x_train, y_train, x_val, y_val = pixels[train_idx], labels[train_idx], pixels[val_idx], labels[val_idx]
    watch.lap("prepare")

    searched = []
    for c in grid or [fixed_c]:
        clock = time.perf_counter()
        model = LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER).fit(x_train, y_train)
        fit_seconds = time.perf_counter() - clock
        accuracy = float((model.predict(x_val) == y_val).mean())
        iterations = int(np.max(model.n_iter_))
        searched.append({"C": c, "val_accuracy": accuracy, "fit_seconds": fit_seconds,
                         "validate_seconds": time.perf_counter() - clock - fit_seconds,
                         "iterations": iterations, "converged": iterations < MAX_ITER, "model": model})
    watch.lap("search")
    best = max(searched, key=lambda s: s["val_accuracy"])  # first of equals: the smaller C

    submission = work / f"{case.name}-sklearn-submission.csv"
    predicted = best["model"].predict(test_pixels)
    pd.DataFrame({"ImageId": np.arange(1, len(predicted) + 1), "Label": predicted}).to_csv(submission, index=False)
    watch.lap("predict_write")

    s = watch.stages
    shared = s["read"] + s["prepare"] + s["predict_write"]
    # The chosen C alone: what a user who already knew C would pay.
    chosen = shared + best["fit_seconds"] + best["validate_seconds"]
    test_accuracy = _test_accuracy(case, submission)
    details = {"C": best["C"], "iterations": best["iterations"], "converged": best["converged"],
               "max_iter": MAX_ITER, "stages_seconds": dict(s)}
    rows = [Row(f"sklearn lbfgs, C={best['C']:g} only", best["val_accuracy"], best["fit_seconds"], chosen,
                test_accuracy, details)]
    if len(searched) > 1:
        rows.append(Row(f"sklearn lbfgs, with C search ({len(searched)} fits)", best["val_accuracy"],
                        sum(x["fit_seconds"] for x in searched), sum(s.values()), test_accuracy, details))
    for entry in searched:
        del entry["model"]
    return rows, searched


# --- (c) the classic tutorial recipe ------------------------------------------------------------------

class FrameDigits(Dataset):
    """One (784 raw 0-255 float pixels, label) per DataFrame row, as the tutorials write it."""

    def __init__(self, frame: pd.DataFrame, labelled: bool = True):
        self.frame = frame.reset_index(drop=True)
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int):
        row = self.frame.iloc[index].to_numpy()
        if self.labelled:
            return torch.tensor(row[1:], dtype=torch.float32), int(row[0])
        return torch.tensor(row, dtype=torch.float32), -1


def collate(batch):
    images, labels = zip(*batch)
    return torch.stack(images), torch.tensor(labels)


def tutorial_predict(model: nn.Module, loader: DataLoader, device: torch.device) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images.to(device)).argmax(1).cpu() for images, _ in loader]).numpy()


def run_tutorial(case: Case, cfg: Config, work: Path, device: torch.device) -> Row:
    watch = Stopwatch(device)
    train = pd.read_csv(case.csv("train"))
    test = pd.read_csv(case.csv("test"))
    watch.lap("read")
    train_idx, val_idx = stratified_split(train["label"].to_numpy(), cfg.val_fraction, cfg.seed)
    loader = DataLoader(FrameDigits(train.iloc[train_idx]), batch_size=TUTORIAL["batch_size"], shuffle=True,
                        collate_fn=collate)
    torch.manual_seed(cfg.seed)
    model = nn.Sequential(nn.Linear(784, 10), nn.Sigmoid()).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=TUTORIAL["lr"])
    watch.lap("prepare")
    for _ in range(TUTORIAL["epochs"]):
        model.train()
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
    fit_seconds = watch.lap("fit")

    val = train.iloc[val_idx]
    val_loader = DataLoader(FrameDigits(val), batch_size=TUTORIAL["batch_size"], collate_fn=collate)
    accuracy = float((tutorial_predict(model, val_loader, device) == val["label"].to_numpy()).mean())
    watch.lap("validate")
    test_loader = DataLoader(FrameDigits(test, labelled=False), batch_size=TUTORIAL["batch_size"], collate_fn=collate)
    predicted = tutorial_predict(model, test_loader, device)
    submission = work / f"{case.name}-tutorial-submission.csv"
    pd.DataFrame({"ImageId": np.arange(1, len(predicted) + 1), "Label": predicted}).to_csv(submission, index=False)
    watch.lap("predict_write")
    return Row("tutorial (sigmoid+CE, SGD 1e-3, 10 ep)", accuracy, fit_seconds, sum(watch.stages.values()),
               _test_accuracy(case, submission),
               {"device": str(device), "stages_seconds": dict(watch.stages), **TUTORIAL})


def _test_accuracy(case: Case, submission: Path) -> float | None:
    return score(submission, case.solution) if case.solution is not None else None


# --- whole processes: what a user waits for, interpreter start-up and imports included ----------------

SKLEARN_PROCESS = """
import sys, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
folder, c, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
train, test = pd.read_csv(folder + "/train.csv"), pd.read_csv(folder + "/test.csv")
model = LogisticRegression(C=c, solver="lbfgs", max_iter=1000)
model.fit(train.drop(columns="label").to_numpy() / 255.0, train["label"].to_numpy())
predicted = model.predict(test.to_numpy() / 255.0)
pd.DataFrame({"ImageId": np.arange(1, len(predicted) + 1), "Label": predicted}).to_csv(out, index=False)
"""


def timed_process(command: list[str], env: dict, repeats: int) -> dict:
    """Fastest and median of `repeats` runs of a whole process, in seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise UserError(f"{shlex.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return {"fastest": min(seconds), "median": float(np.median(seconds)), "all": seconds}


class BusyCore:
    """Another process spinning on one core while the timed commands run, as on a shared machine."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait()


# How the kit's threads may wait: its own default (threads sleep at barriers), OpenMP's spinning, one thread.
THREAD_POLICIES = {"kit default (OMP_WAIT_POLICY=PASSIVE)": {},
                   "OMP_WAIT_POLICY=ACTIVE (spinning)": {"OMP_WAIT_POLICY": "ACTIVE"},
                   "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"}}


def whole_process(folder: Path, work: Path, c: float, repeats: int, threads: int | None = None,
                  auto_repeats: int = 0) -> dict:
    """`digit-recognizer train` (and `--folds 5 --weight-decay auto`) against pandas + scikit-learn, as whole
    processes, on a quiet machine and with one core kept busy by another process.

    On a shared machine the threads' wait policy matters: spinning OpenMP threads steal the busy
    core's time from the working thread, so `train` is timed under each of THREAD_POLICIES too.
    """
    env = {**os.environ, "DIGIT_RECOGNIZER_CACHE": str(work / "whole-process-cache"), "TQDM_DISABLE": "1"}
    if threads:
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    runs = work / "whole-process-runs"
    kit = [sys.executable, "-m", "digit_recognizer", "train", "--data", str(folder), "--runs", str(runs)]
    subprocess.run(kit, env=env, capture_output=True)  # fills the parse cache: the timed runs are warm
    timings = {}
    for load in ("quiet", "one busy core"):
        with BusyCore() if load != "quiet" else contextlib.nullcontext():
            for policy, extra in THREAD_POLICIES.items():
                if threads and extra:
                    continue  # --threads fixes the thread count for every command
                timings[f"train, {policy}, {load}"] = timed_process(kit, {**env, **extra}, repeats)
            if auto_repeats:
                timings[f"train --folds 5 --weight-decay auto, {load}"] = timed_process(
                    kit + ["--folds", "5", "--weight-decay", "auto"], env, auto_repeats)
    sklearn = [sys.executable, "-c", SKLEARN_PROCESS, str(folder), str(c), str(work / "whole-process-sklearn.csv")]
    timings["pandas + scikit-learn lbfgs, quiet"] = timed_process(sklearn, env, 1 if repeats == 1 else 2)
    return {"seconds": timings, "C": c, "repeats": repeats, "threads": threads or "default"}


def format_whole_process(result: dict) -> str:
    lines = [f"whole processes, imports included, parse cache warm ({result['repeats']} runs each; threads "
             f"{result['threads']}; scikit-learn C={result['C']:g}):"]
    base = next(iter(result["seconds"].values()))["fastest"]
    for name, t in result["seconds"].items():
        lines.append(f"  {name}: fastest {t['fastest']:.2f}s, median {t['median']:.2f}s "
                     f"({t['fastest'] / base:.2f}x the kit's quiet train)")
    return "\n".join(lines)


# --- the tables ------------------------------------------------------------------------------------------

def run_case(case: Case, cfg: Config, work: Path, grid: list[float], fixed_c: float, reference: bool = False) -> dict:
    """Every method on one folder; `reference` adds the kit's CV runs and scikit-learn on the kit's features."""
    print(f"\n[{case.name}] running the kit, scikit-learn and the tutorial recipe on {case.folder} ...", flush=True)
    rows = run_kit(case, cfg, work)
    if reference:
        rows += run_kit_cv(case, cfg, work, CV_VARIANTS)
    sklearn_rows, searched = run_sklearn(case, cfg, work, grid, fixed_c)
    rows += sklearn_rows
    feature_search = []
    if reference:
        feature_row, feature_search = run_sklearn_on_kit_features(case, cfg, work, FEATURE_C_GRID)
        rows.append(feature_row)
    rows.append(run_tutorial(case, cfg, work, training_device(cfg.device)))
    return {"name": case.name, "title": case.title, "folder": str(case.folder), "rows": rows,
            "sklearn_c": sklearn_rows[0].details["C"], "c_search": searched, "feature_c_search": feature_search}


def format_table(result: dict, command: str) -> str:
    rows: list[Row] = result["rows"]
    base = rows[0]  # the kit's cold run: ratios say how many times longer a method takes than the kit
    has_test = any(r.test_accuracy is not None for r in rows)
    header = ["method", "held-out acc"] + (["test acc"] if has_test else []) + \
             ["fit s", "end-to-end s", "fit x kit", "end-to-end x kit"]
    lines = []
    for r in rows:
        cells = [r.method, f"{r.val_accuracy:.4f}"]
        if has_test:
            cells.append("-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}")
        cells += [f"{r.fit_seconds:.3f}", f"{r.end_to_end_seconds:.3f}",
                  f"{r.fit_seconds / base.fit_seconds:.1f}", f"{r.end_to_end_seconds / base.end_to_end_seconds:.1f}"]
        lines.append(cells)
    widths = [max(len(x) for x in column) for column in zip(header, *lines)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [f"== {result['title']}", f"   command: {command}", f"   data: {result['folder']}",
           fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)]
    out.append("x kit = the method's seconds / the kit's cold-run seconds (above 1: the kit is faster).")
    search = result["c_search"]
    if search:
        out.append("scikit-learn C on the validation split: " + "; ".join(
            f"C={s['C']:g} acc {s['val_accuracy']:.4f} in {s['fit_seconds']:.2f}s, {s['iterations']} iter"
            + ("" if s["converged"] else f" (NOT converged at max_iter={MAX_ITER})") for s in search))
    if result.get("feature_c_search"):
        out.append("scikit-learn C on the kit's features: " + "; ".join(
            f"C={s['C']:g} (weight decay {s['equivalent_weight_decay']:.2g}) acc {s['val_accuracy']:.4f}, "
            f"{s['iterations']} iter" + ("" if s["converged"] else " (NOT converged)") for s in result["feature_c_search"]))
    if result.get("whole_process"):
        out.append(format_whole_process(result["whole_process"]))
    stages = rows[0].details["timings_seconds"]
    out.append("kit cold-run stages (s): " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))
    return "\n".join(out)


def environment(cfg: Config) -> dict:
    import sklearn
    from threadpoolctl import threadpool_info

    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "sklearn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": torch.get_num_threads(),
            "blas_threads": sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()}),
            "device": str(training_device(cfg.device)),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "kit_config": settings_changed(cfg) or "defaults"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="Kaggle-format folder (train.csv, test.csv) for the timing table; "
                        "default: 42,000/28,000 rows built from the embedded sample in a temporary folder")
    parser.add_argument("--only", choices=("accuracy", "timing"), help="run one table (default: both)")
    parser.add_argument("--skip-sklearn-grid", action="store_true",
                        help="on the timing data fit only one C: --sklearn-c, else the accuracy table's best C, else 1.0")
    parser.add_argument("--sklearn-c", type=float, help="the C to fit when the grid is skipped")
    parser.add_argument("--c-grid", type=float, nargs="+", default=C_GRID, help=f"C values searched (default: {C_GRID})")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="the kit's --device; the tutorial recipe runs on the same device, scikit-learn on the CPU")
    parser.add_argument("--threads", type=int, help="limit torch and BLAS threads (torch.set_num_threads, threadpoolctl)")
    parser.add_argument("--repeats", type=int, default=3, help="whole-process timings: runs of each, the fastest "
                        "kept (other load on the machine only ever adds time) (default: 3)")
    parser.add_argument("--auto-repeats", type=int, default=0, help="also time `train --folds 5 --weight-decay "
                        "auto` as a whole process this many times, quiet and with a busy core (default: 0, skipped)")
    parser.add_argument("--out", type=Path, help="write the raw numbers as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import sklearn  # noqa: F401  (imported before any clock starts)
    except ImportError:
        print("compare.py: error: scikit-learn is missing; pip install -e '.[bench]'", file=sys.stderr)
        return 2
    try:
        return run(args, argv)
    except kernel.SettingError as exc:
        print(f"compare.py: error: {kernel.as_flag(exc)}", file=sys.stderr)
        return 2
    except (UserError, kernel.UserError) as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    cfg = replace(Config(), device=args.device)
    training_device(cfg.device)  # --device cuda without CUDA: one line before any work
    command = shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(["compare.py", *argv])
    env = environment(cfg)
    print(f"command: {command}")
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    results = []
    with tempfile.TemporaryDirectory(prefix="digit-bench-") as tmp:
        work = Path(tmp)
        best_c = None
        if args.only != "timing":
            case = Case("accuracy", "ACCURACY: embedded sample, real digits (train.csv 4,000 rows, 10% held out; "
                        "test acc = test.csv 1,000 rows vs solution.csv.gz)", SAMPLE_DIR, SAMPLE_DIR / "solution.csv.gz")
            results.append(run_case(case, cfg, work, args.c_grid, 1.0, reference=True))
            print("\n" + format_table(results[-1], command), flush=True)
            best_c = results[-1]["sklearn_c"]
        if args.only != "accuracy":
            folder = args.data
            title = f"TIMING: {folder} (held-out acc is honest only on real, unshifted data)" if folder else "TIMING: Kaggle-size (42,000/28,000 rows of shifted sample copies; " \
                                                        "held-out acc inflated, copies straddle the split)"
            if folder is None:
                print("\nbuilding Kaggle-size data from the embedded sample (not timed) ...", flush=True)
                folder = write_kaggle_size(work / "kaggle-size")
            grid = [] if args.skip_sklearn_grid else args.c_grid
            fixed_c = args.sklearn_c or best_c or 1.0
            results.append(run_case(Case("timing", title, folder), cfg, work, grid, fixed_c))
            results[-1]["whole_process"] = whole_process(folder, work, fixed_c, args.repeats, args.threads,
                                                         args.auto_repeats)
            print("\n" + format_table(results[-1], command), flush=True)
    if args.out:
        for result in results:
            result["rows"] = [vars(r) for r in result["rows"]]
        args.out.write_text(json.dumps({"command": command, "environment": env, "tables": results}, indent=2,
                                       default=str) + "\n")
        print(f"\nraw numbers: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
