# %% [markdown]
# # Kaggle Digit Recognizer: softmax regression in PyTorch
#
# One linear layer from fixed features of each image to 10 digit scores, trained with cross-entropy:
#
# 1. Features (section 3): each digit deskewed, scaled to one height and blurred, plus pooled
#    gradient-direction planes; standardised on the training split (section 4).
# 2. Fitted to the optimum of its L2-penalised loss by L-BFGS (sections 5 and 7), or, with
#    `optimizer = "adam"`, for epochs, keeping the best on a stratified 10% hold-out.
# 3. With `folds`, k-fold cross-validation estimates the public score (section 8).
# 4. `submission.csv`, `metrics.json`, `model.pt` and the pictures go to `/kaggle/working`.
#
# Edit the settings below after *Copy & Edit*, then *Run All*. As a script: `python digit_recognizer_kernel.py
# --input DATA --output OUT [--folds 5 ...]` (`--help` lists every option). GENERATED from the
# digit_recognizer package's `core/` by `digit-recognizer bundle`: the code tested locally is the code that
# runs here.

# %% [markdown]
# ## Settings
#
# The run's options; `digit-recognizer kernels push --folds 5 --weight-decay auto ...` writes them into
# the copy it pushes. Run as a script, a command-line flag overrides its setting.

# %%
SETTINGS = dict(
    seed=0,
    val_fraction=0.1,
    epochs=10,
    patience=3,
    batch_size=0,
    lr=0.003,
    weight_decay=0.003,
    optimizer="lbfgs",
    schedule="cosine",
    features="orientations",
    refit=False,
    folds=0,
    device="auto",
)

# %% [markdown]
# ## 1. Configuration

# %%
class UserError(Exception):
    """A mistake the user can fix (bad file, bad flag): shown as one line, without a traceback."""

# %% [markdown]
# **`core/config.py`**: The one training configuration: every option of a run, with its default, and how
# torch's threads wait.

# %%
import os
from dataclasses import dataclass

# Set here because this module loads before torch, in the package and in the kernel: libgomp reads
# it when torch loads it. torch's OpenMP threads spin at every barrier by default, which on a busy
# machine steals the time the working thread needs (with one of two cores busy, `train` at Kaggle
# size took twice as long; see benchmarks/README.md); sleeping instead costs a quiet machine almost
# nothing for work this size. A user's own OpenMP wait settings are left alone.
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# L2 strengths that --weight-decay auto tries (see README: the sample's optimum, 0.003, sits inside it).
# 0.1 lost 0.7 points of CV on the sample's orientation features, and more data only favours weaker
# penalties, so it is not tried: a fifth of the CV's cost.
WEIGHT_DECAY_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
# The feature ladder (core/features.py), from what the tutorials feed a linear model to the default.
FEATURE_RUNGS = ("pixels", "deskew", "normalised", "orientations")

@dataclass(frozen=True)
class Config:
    seed: int = 0
    val_fraction: float = 0.1
    epochs: int = 10
    patience: int = 3  # 0: never stop early
    batch_size: int = 0  # 0: auto, see batch_size_for
    lr: float = 0.003
    weight_decay: float | str = 3e-3  # or "auto": chosen by cross-validation from WEIGHT_DECAY_GRID
    optimizer: str = "lbfgs"  # the optimum of the penalised loss; adam/sgd: epochs with early stopping
    schedule: str = "cosine"
    features: str = "orientations"
    refit: bool = False
    folds: int = 0  # 0: one stratified hold-out split; K >= 2: K-fold cross-validation
    device: str = "auto"

    def check(self, train_labels=None) -> "Config":
        """Raise UserError for a value no run could use (core/checks.py); return the config."""
        check_config(self, train_labels)
        return self

    def batch_size_for(self, n_examples: int) -> int:
        """Auto: 256, or more on big data to keep 32 steps an epoch (fewer, larger steps reach the same
        validation accuracy there with less per-step overhead; README)."""
        return self.batch_size or max(256, -(-n_examples // 32))

# %% [markdown]
# **`core/flags.py`**: The kernel's command line: where Kaggle keeps the data and the outputs, and the flags.
#
# Only the standard library is imported up to here, so that `--help` and a mistyped flag are answered
# before torch and pandas load: the kernel parses its flags once right after this section. The
# settings at the top are the flags' defaults; a flag given on the command line overrides them.

# %%
import argparse
import sys
from dataclasses import fields
from pathlib import Path

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
KERNEL_PROG = "digit_recognizer_kernel.py"

def parse_kernel_args(argv: list[str] | None = None, settings: dict | None = None) -> argparse.Namespace:
    if argv is None:
        # Run as a notebook cell, sys.argv holds the Jupyter launcher's flags, not ours.
        argv = [] if "ipykernel" in sys.modules else sys.argv[1:]
    parser = kernel_parser()
    unknown = sorted(set(settings or {}) - {f.name for f in fields(Config)})
    if unknown:
        parser.error(f"SETTINGS has no option {unknown[0]!r}; the options are those of --help, "
                     f"with _ for - ({', '.join(f.name for f in fields(Config))})")
    # Each setting is read as its flag, so it is checked exactly as the flag is; a flag given after it wins.
    given = []
    for name, value in (settings or {}).items():
        flag = "--" + name.replace("_", "-")
        given += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return parser.parse_args(given + argv)

def kernel_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=KERNEL_PROG, description="Train multinomial logistic regression on "
                                     "Kaggle's Digit Recognizer data, validate it and write submission.csv.")
    parser.add_argument("--input", type=Path, help="the folder holding train.csv and test.csv, or a folder "
                        f"to search below (default: search {KAGGLE_INPUT})")
    parser.add_argument("--output", type=Path, help="where submission.csv, model.pt and metrics.json go "
                        f"(default: {KAGGLE_WORKING} on Kaggle, else ./output)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (default: off)")
    add_config_arguments(parser)
    return parser

CHOICES = {"features": FEATURE_RUNGS, "optimizer": ("adam", "sgd", "lbfgs"),
           "schedule": ("cosine", "constant"), "device": ("auto", "cpu", "cuda")}
HELP = {
    "seed": "random seed for the split, initialisation and batch order",
    "val_fraction": "fraction of train.csv held out, stratified by label, to validate on",
    "epochs": "passes over the training split (the learning-rate schedule spans them all)",
    "patience": "stop after this many epochs without a better validation accuracy; 0 = never",
    "batch_size": "examples per optimiser step; 0 = auto: 256, or enough for 32 steps an epoch on big data",
    "lr": "peak learning rate",
    "weight_decay": "L2 penalty on the weights, or 'auto': the best of "
                    f"{', '.join(map(str, WEIGHT_DECAY_GRID))} by cross-validation (needs --folds)",
    "optimizer": "lbfgs: the optimum of the penalised loss (no epochs); adam or sgd: epochs, early stop",
    "schedule": "learning-rate schedule over the run",
    "features": "what the linear layer sees: raw pixels; deskewed; normalised (deskewed, one height, "
                "blurred); orientations (normalised + 392 pooled gradient-direction planes)",
    "refit": "retrain on all of train.csv for the predictions (at the best epoch; with --folds instead of "
             "averaging the fold models; --weight-decay auto always does)",
    "folds": "K >= 2: K-fold cross-validation, the expected public score +- its standard error; 0: none",
    "device": "where to train: auto picks CUDA when available",
}

def weight_decay_value(text: str) -> float | str:
    """--weight-decay takes a number or the word auto."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None

def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, so the CLI and the Kaggle kernel accept the same options."""
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=HELP[f.name])
        else:
            kind = weight_decay_value if f.name == "weight_decay" else type(f.default)
            parser.add_argument(flag, type=kind, default=f.default, choices=CHOICES.get(f.name),
                                help=f"{HELP[f.name]} (default: {f.default})")

def config_from_args(args: argparse.Namespace) -> Config:
    """The config the flags make, checked; a flag it will not use is said on stderr, not silently dropped."""
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config)}).check()
    notice = ignored_notice(cfg)
    if notice:
        print(notice, file=sys.stderr)
    return cfg

if __name__ == "__main__":  # answers --help and a bad flag before torch and pandas are imported
    parse_kernel_args(settings=SETTINGS)

# %% [markdown]
# ## 2. Reading the CSVs
#
# **`core/data.py`**: Where Kaggle's data is, and loading its two CSVs as uint8 arrays.

# %%
import numpy as np

@dataclass
class DigitData:
    """Kaggle's two tables: labelled training images and unlabelled test images, as uint8."""
    source: str
    train_images: np.ndarray  # (n, 784) uint8
    train_labels: np.ndarray  # (n,) uint8
    test_images: np.ndarray   # (m, 784) uint8

def find_kaggle_input(root: Path = KAGGLE_INPUT) -> Path | None:
    """The folder under /kaggle/input holding both train.csv and test.csv, wherever it is mounted."""
    if not root.is_dir():
        return None
    for train in sorted(root.rglob("train.csv")):
        if (train.parent / "test.csv").is_file():
            return train.parent
    return None

def load_folder(folder: Path, read_table=None) -> DigitData:
    """Load the folder holding train.csv and test.csv (or their .gz).

    `read_table(path, columns, limits)` parses one file; locally it is the cached reader.
    """
    read_table = read_table or load_table
    train_path, test_path = find_csv(folder, "train"), find_csv(folder, "test")
    train = read_table(train_path, TRAIN_COLUMNS, TRAIN_LIMITS)
    return checked(str(folder), str(train_path), train, read_table(test_path, TEST_COLUMNS, PIXEL_LIMITS))

def find_csv(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        # A folder, FIFO or broken link of that name: read_bytes says which.
        if os.path.lexists(folder / name):
            return folder / name
    zipped = folder / "digit-recognizer.zip"
    hint = f" (unzip {zipped} there, or pass the zip itself as --data)" if zipped.is_file() else ""
    raise UserError(f"{folder / (stem + '.csv')}: no such file; the folder needs train.csv and "
                    f"test.csv{hint}")

def checked(source: str, train_name: str, train: np.ndarray, test: np.ndarray) -> DigitData:
    labels = train[:, 0]
    absent = sorted(set(range(10)) - set(np.unique(labels).tolist()))
    if absent:
        raise UserError(f"{train_name}: no examples of digit{'s' if len(absent) > 1 else ''} "
                        f"{', '.join(map(str, absent))}; training needs all ten digits 0-9")
    return DigitData(source, np.ascontiguousarray(train[:, 1:]), labels.copy(), test)

def load_table(path: Path, columns: list[str], limits: dict[str, int]) -> np.ndarray:
    """Parse one CSV (pandas reads a plain file itself, which is faster than from bytes)."""
    return parse_table(str(path), read_bytes(path), columns, limits,
                       path=path if path.suffix != ".gz" else None)

# %% [markdown]
# ## 3. Preprocessing
#
# **`core/deskew.py`**: Moment-based deskewing: shear each digit so its principal axis is vertical, and centre
# it.
#
# A linear model scores each pixel on its own, so a slanted or off-centre 7 puts its ink where the template
# has none; upright and centred, every 7 inks roughly the same pixels (LeCun et al. 1998: 12% -> 8.4% error
# for a linear classifier; on the sample, 5-fold CV 0.9035 -> 0.9415). With `size`, the same bilinear
# resampling also scales the digit to that vertical spread: one interpolation, not two. The sampling grid is
# built by broadcasting rather than affine_grid, whose batched tiny matmuls are slow on the CPU.

# %%
import torch
import torch.nn.functional as F

SIDE = 28

def upright(images: torch.Tensor, size: float | None = None) -> torch.Tensor:
    """Deskewed (and, with `size`, size-normalised) copies of float images (n, 1, 28, 28), ink in [0, 1]."""
    return F.grid_sample(images, upright_grid(images[:, 0], size), mode="bilinear", padding_mode="zeros",
                         align_corners=False)

def upright_grid(images: torch.Tensor, size: float | None = None) -> torch.Tensor:
    """Sampling grid (n, 28, 28, 2) in grid_sample's [-1, 1] units, from the images' moments.

    Output pixel (x, y), taken from the frame's centre c, reads input (cx + k (x + alpha y), cy + k y):
    alpha = cov(x, y) / var(y) removes the slant, the centre of mass moves to the middle, and the
    zoom k is 1, or sd(y) / size so that the ink's vertical spread becomes `size` pixels.
    """
    coords = torch.arange(SIDE, dtype=images.dtype, device=images.device)
    rows, cols = images.sum(dim=2), images.sum(dim=1)  # ink per row (y) and per column (x)
    mass = rows.sum(1).clamp_min(1e-6)
    cy, cx = rows @ coords / mass, cols @ coords / mass
    var_y = rows @ coords.square() / mass - cy.square()
    cov_xy = (images @ coords) @ coords / mass - cx * cy  # sum over y, x of ink * x * y
    flat = var_y <= 1e-3  # no vertical spread (blank, or one row of ink): nothing to straighten or scale
    alpha = torch.where(flat, torch.zeros_like(var_y), cov_xy / var_y.clamp_min(1e-3))
    zoom = torch.ones_like(var_y) if size is None else torch.where(flat, torch.ones_like(var_y),
                                                                    var_y.clamp_min(1e-3).sqrt() / size)
    # grid_sample's units with align_corners=False: a pixel p from the centre sits at p / (SIDE / 2).
    centred = (coords - (SIDE - 1) / 2) / (SIDE / 2)
    # (n, 28): one shift per output row, and one zoom per image.
    x_shift = (alpha * zoom)[:, None] * centred + (cx - (SIDE - 1) / 2)[:, None] / (SIDE / 2)
    y_in = zoom[:, None] * centred + (cy - (SIDE - 1) / 2)[:, None] / (SIDE / 2)  # (n, 28)
    x_in = zoom[:, None, None] * centred + x_shift[:, :, None]  # (n, 28 rows, 28 columns)
    return torch.stack((x_in, y_in[:, :, None].expand(-1, -1, SIDE)), dim=-1)

# %% [markdown]
# **`core/features.py`**: What the one linear layer sees: a ladder of fixed features of each image, computed
# per image (an
# image's features are the same alone or in any batch). On the sample, 5-fold CV at each rung's L2 optimum
# (README): pixels 0.896, deskew 0.940, normalised 0.950, orientations 0.982.
#
# - `pixels`: the raw 784 pixels as ink in [0, 1], what the tutorials feed it;
# - `deskew`: each digit sheared upright by its second moments and centred (section 3's first cell);
# - `normalised`: the same one resampling also scales the ink's vertical standard deviation to 5.55 px,
#   then a Gaussian blur (sigma 1 px), so a stroke a pixel off still overlaps the template it matches;
# - `orientations` (the default): the normalised pixels plus 8 x 7 x 7 direction planes. On the upright,
#   unblurred image each pixel's Sobel gradient magnitude is shared between the two nearest of 8
#   directions, and each plane is pooled by a Gaussian (sigma 2 px) every 4 px. A linear model cannot
#   compute "a horizontal edge near here" from pixels; handed it, it tells strokes apart by direction,
#   which is most of what tells a 4 from a 9.

# %%
import math

DEFAULT_RUNG = Config.features
N_PIXELS = SIDE * SIDE
SIZE = 5.55  # the normalised ink's vertical standard deviation, in pixels
BLUR_SIGMA = 1.0
DIRECTIONS = 8
POOL_SIGMA, POOL_STRIDE = 2.0, 4
POOL_TAPS = 12  # an even kernel centres each sample between pixels: 1.5, 5.5, ..., 25.5 in a 28-pixel frame
POOLED = (SIDE + 2 * 4 - POOL_TAPS) // POOL_STRIDE + 1  # 7 samples a side with 4 pixels of zero padding
# Features are computed this many images at a time: the intermediates stay small and cache-warm.
CHUNK = 2048

def feature_count(rung: str) -> int:
    return N_PIXELS + (DIRECTIONS * POOLED * POOLED if rung == "orientations" else 0)

def feature_blocks(rung: str) -> list[slice]:
    """The feature blocks that share one scale each: the pixels, then the orientation planes."""
    return [slice(0, N_PIXELS)] + ([slice(N_PIXELS, feature_count(rung))] if rung == "orientations" else [])

def image_features(pixels: torch.Tensor, rung: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels (n, 784) -> float features (n, feature_count(rung)), computed chunk by chunk."""
    out = torch.empty(len(pixels), feature_count(rung), dtype=dtype, device=pixels.device)
    for start in range(0, len(pixels), CHUNK):
        ink = pixels[start:start + CHUNK].to(dtype).div_(255.0).view(-1, 1, SIDE, SIDE)
        out[start:start + len(ink)] = features_of_ink(ink, rung)
    return out

def features_of_ink(ink: torch.Tensor, rung: str) -> torch.Tensor:
    """(b, 1, 28, 28) ink in [0, 1] -> (b, feature_count(rung)): one rung of the ladder."""
    if rung == "pixels":
        return ink.flatten(1)
    if rung == "deskew":
        return upright(ink).flatten(1)
    normalised = upright(ink, SIZE)
    blurred = blur(normalised).flatten(1)
    if rung == "normalised":
        return blurred
    return torch.cat([blurred, orientation_planes(normalised).flatten(1)], dim=1)

def orientation_planes(images: torch.Tensor) -> torch.Tensor:
    """(b, 1, 28, 28) -> (b, 8, 7, 7): gradient energy by direction, pooled over 4-pixel cells."""
    # Sobel: smoothing along one axis, the derivative along the other.
    smooth, derive = [1.0, 2.0, 1.0], [-1.0, 0.0, 1.0]
    gx = separable(images, band(smooth, SIDE, 1, 1, images), band(derive, SIDE, 1, 1, images))
    gy = separable(images, band(derive, SIDE, 1, 1, images), band(smooth, SIDE, 1, 1, images))
    magnitude = torch.sqrt(gx.square() + gy.square())
    # The angle in units of 45 degrees, in [0, 8): its magnitude goes to the two nearest directions,
    # linearly by closeness, so a gradient between two directions is not snapped to either.
    position = torch.atan2(gy, gx).div_(2 * math.pi / DIRECTIONS).remainder_(DIRECTIONS)
    lower = position.floor()
    upper_share = position - lower
    lower = lower.long().remainder_(DIRECTIONS)  # 7.99999 can round up to 8.0
    planes = torch.zeros(len(images), DIRECTIONS, SIDE, SIDE, dtype=images.dtype, device=images.device)
    planes.scatter_add_(1, lower, magnitude * (1 - upper_share))
    planes.scatter_add_(1, (lower + 1).remainder_(DIRECTIONS), magnitude * upper_share)
    pool = band(gaussian(POOL_SIGMA, POOL_TAPS), SIDE, POOL_STRIDE, 4, images)
    return separable(planes, pool, pool)

def blur(images: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of BLUR_SIGMA, the frame's size kept (zeros beyond its edge)."""
    kernel = band(gaussian(BLUR_SIGMA, 7), SIDE, 1, 3, images)
    return separable(images, kernel, kernel)

def gaussian(sigma: float, taps: int) -> list[float]:
    offsets = [t - (taps - 1) / 2 for t in range(taps)]
    weights = [math.exp(-o * o / (2 * sigma * sigma)) for o in offsets]
    return [w / sum(weights) for w in weights]

def band(kernel: list[float], size: int, stride: int, padding: int, like: torch.Tensor) -> torch.Tensor:
    """The matrix (out, size) of a 1-D correlation with `kernel`, zero-padded by `padding`, every
    `stride`-th output.

    Filters as matrices: a separable 2-D filter is then two small matmuls, which run many times
    faster on the CPU than conv2d does on one-channel 28x28 images.
    """
    out = (size + 2 * padding - len(kernel)) // stride + 1
    matrix = torch.zeros(out, size + 2 * padding, dtype=like.dtype)
    for o in range(out):
        matrix[o, o * stride:o * stride + len(kernel)] = torch.tensor(kernel, dtype=like.dtype)
    return matrix[:, padding:padding + size].to(like.device)

def separable(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """rows @ image @ cols.T for every (b, c, h, w) image: a separable filter, rows along y, cols along x."""
    return rows @ images @ cols.T

# %% [markdown]
# ## 4. The model
#
# **`core/model.py`**: Multinomial logistic regression: one linear layer on standardised features of the
# image.
#
# Standardised with each feature's training mean and one scale shared by each block of features (the
# pixels; the orientation planes): a scale per pixel would blow up the border pixels that are almost
# never inked (0.930 against 0.939 validation, README).

# %%
import io

from torch import nn

N_CLASSES = 10
MODEL_FORMAT = 2  # 2: the feature rung is saved; 1 (older runs) saved only whether it deskewed

class SoftmaxRegression(nn.Module):
    """Logits = W x + b on preprocessed pixels; cross-entropy turns them into a softmax model.

    The preprocessing (the feature rung, each feature's mean and each block's scale, fitted on the
    training split) is part of the model, so a saved model predicts raw Kaggle pixels exactly as it
    did in training.
    """

    def __init__(self, features: str = DEFAULT_RUNG):
        super().__init__()
        self.features = features
        n_features = feature_count(features)
        self.linear = nn.Linear(n_features, N_CLASSES)
        # Zero start: the loss is convex, so this costs nothing and makes runs reproducible by construction.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (n, 784) -> the rung's float features (n, d), not yet standardised."""
        return image_features(pixels, self.features, self.mean.dtype)

    def fit_standardizer(self, prepared: torch.Tensor) -> None:
        """Centre each feature on its training-split mean and scale each block by one shared std.

        One scale per block (the pixels; the orientation planes), not one per feature: dividing
        each pixel by its own std blows up the near-empty border pixels, and on validation it
        loses to plain centring (see README).
        """
        self.mean.copy_(prepared.mean(0))
        for block in feature_blocks(self.features):
            self.std[block] = block_scale(prepared[:, block], self.mean[block])

    def standardize(self, prepared: torch.Tensor) -> torch.Tensor:
        """In place: `prepared` is always a fresh tensor from prepare()."""
        return prepared.sub_(self.mean).div_(self.std)

    def features_of(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.standardize(self.prepare(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features_of(pixels))

def block_scale(block: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The std of a block's values about their own features' means: sqrt(E[x^2] - mean(mean^2)), no copy."""
    mean_square = torch.linalg.vector_norm(block).square() / block.numel()
    return (mean_square - mean.square().mean()).clamp_min(1e-12).sqrt()

def save_model(model: SoftmaxRegression, path: Path, extra: dict) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # written by Python, so that a full disk is an OSError, not torch's RuntimeError
    torch.save({"format": MODEL_FORMAT, "features": model.features, "state_dict": state, **extra}, buffer)
    Path(path).write_bytes(buffer.getvalue())

# %% [markdown]
# ## 5. Training
#
# **`core/split.py`**: A stratified, seeded hold-out split.

# %%
from collections import Counter

def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): each digit contributes round(val_fraction * its count) to validation."""
    problem = holdout_problem(Counter(labels.tolist()), val_fraction)  # the rule Config.check applies
    if problem:
        raise UserError(problem)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        n_val = int(round(val_fraction * len(members)))
        members = rng.permutation(members)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))

def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each example: each digit's examples, shuffled, dealt round the folds."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    problem = folds_problem(Counter(labels.tolist()), folds)  # the rule Config.check applies
    if problem:
        raise UserError(problem)
    start = 0
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        # Continue the deal where the previous digit stopped, so the folds' sizes differ by at most one.
        fold_of[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return fold_of

# %% [markdown]
# **`core/train.py`**: Training: the whole dataset on the device, shuffled index slices, the best epoch kept.
#
# The model kept is the one of the epoch with the best accuracy on a held-out split, stratified so that
# each digit is held out in its own proportion (a skewed split would score a skewed mix of digits);
# training stops once `patience` epochs bring nothing better, as big data peaks within a few epochs.

# %%
import time
from dataclasses import dataclass, field

def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here (no GPU, or a CPU-only torch); "
                        "use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() and cuda_starts() else "cpu"
    return torch.device(name)

def cuda_starts() -> bool:
    """Whether an attached GPU takes work: a broken driver must not cost a Kaggle run its submission."""
    try:
        torch.zeros(1, device="cuda").add_(1).item()
        return True
    except Exception as exc:  # noqa: BLE001  (RuntimeError, or AssertionError from a CPU-only build)
        print(f"warning: a GPU is attached but CUDA failed to start ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}); training on the CPU", file=sys.stderr)
        return False

@dataclass
class FitResult:
    model: SoftmaxRegression
    best_epoch: int  # 1-based; 0 when nothing was validated (refit)
    history: list[dict] = field(default_factory=list)  # per epoch: train and val loss and accuracy
    seconds: float = 0.0

def fit(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor, val_pixels: torch.Tensor | None = None,
        val_labels: torch.Tensor | None = None, epochs: int | None = None, desc: str = "train") -> FitResult:
    """Train a fresh model on device tensors; with validation data keep the best epoch's weights.

    With `--optimizer lbfgs` there are no epochs: the model is the optimum of its penalised loss.
    """
    if cfg.optimizer == "lbfgs":
        return fit_to_optimum(cfg, pixels, labels, val_pixels, val_labels, desc)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=pixels.device).manual_seed(cfg.seed)
    # One shuffle up front; every epoch then takes contiguous slices (views, not copies) in a new order.
    shuffled = torch.randperm(len(pixels), device=pixels.device, generator=generator)
    pixels, targets = pixels[shuffled], labels[shuffled].long()
    model = SoftmaxRegression(cfg.features).to(pixels.device)
    with torch.no_grad():
        prepared = model.prepare(pixels)
        model.fit_standardizer(prepared)
        features = model.standardize(prepared)
        val_features = model.features_of(val_pixels) if val_pixels is not None else None
    epochs = epochs or cfg.epochs
    optimizer = make_optimizer(cfg.optimizer, model.linear.weight, model.linear.bias, cfg.weight_decay)
    batches = Batches(len(features), cfg.batch_size_for(len(features)), cfg.seed)
    validating = val_features is not None
    history, best_accuracy, best_epoch, best_weights = [], -1.0, 0, None
    progress = Progress(desc, epochs)
    for epoch in range(1, epochs + 1):
        loss, accuracy = train_epoch(cfg, model, optimizer, features, targets, batches, (epoch - 1) / epochs,
                                     1 / epochs)
        record = {"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy}
        if validating:
            record.update(validate(model, val_features, val_labels.long()))
        finite = torch.isfinite(model.linear.weight).all() & torch.isfinite(model.linear.bias).all()
        # One host sync per epoch, for the progress bar, early stopping and the divergence check; none per
        # step.
        record = {k: (v.item() if torch.is_tensor(v) else v) for k, v in record.items()}
        check_finite(cfg, epoch, record, bool(finite), progress)
        history.append(record)
        progress.update(record)
        if validating and record["val_accuracy"] > best_accuracy:
            # A copy on the host: the best weights survive later epochs, at 31 KB per improvement.
            best_accuracy, best_epoch = record["val_accuracy"], epoch
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.linear.state_dict().items()}
        elif validating and cfg.patience and epoch - best_epoch >= cfg.patience:
            break  # big data peaks in a few epochs; the rest would cost time for nothing
    progress.close()
    if best_weights is not None:
        model.linear.load_state_dict(best_weights)
    return FitResult(model.eval(), best_epoch, history, time.perf_counter() - start)

def fit_to_optimum(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor,
                   val_pixels: torch.Tensor | None = None, val_labels: torch.Tensor | None = None,
                   desc: str = "train") -> FitResult:
    """The optimum of mean cross-entropy + weight_decay/2 |W|^2 on these images, by full-batch L-BFGS.

    The loss is convex, so there is one optimum and nothing to stop early: the validation split
    only measures it, and its history has one record per L-BFGS iteration: the penalised training
    objective and the validation loss and accuracy of the iterate.
    """
    start = time.perf_counter()
    model = SoftmaxRegression(cfg.features).to(pixels.device)
    with torch.no_grad():
        prepared = model.prepare(pixels)
        model.fit_standardizer(prepared)
        val = (model.features_of(val_pixels), val_labels.long()) if val_pixels is not None else None
    history = []

    def record(iteration: int, x: torch.Tensor, value: torch.Tensor) -> None:
        entry = {"train_loss": value.flatten()[0]}
        if val is not None:
            d = x.shape[1] - 1
            entry.update(validate_logits(val[0] @ x[0, :d, 0] + x[0, d, 0], val[1]))
        values = torch.stack(list(entry.values())).tolist()  # one host read an iteration
        history.append({"iteration": iteration, **dict(zip(entry, values))})

    iterations = set_to_optimum(model, prepared, labels.long(), float(cfg.weight_decay), desc, record)
    return FitResult(model.eval(), iterations, history, time.perf_counter() - start)

def set_to_optimum(model: SoftmaxRegression, prepared: torch.Tensor, targets: torch.Tensor, decay: float,
                   desc: str, record=None) -> int:
    """Fit the model's linear layer to the optimum on its standardised features; return the iterations.

    `record(iteration, x, value)`, if given, sees each iterate.
    """
    mask = torch.ones(1, len(targets), dtype=torch.bool, device=prepared.device)
    progress = OptimumProgress(desc, 1)

    def report(iteration: int, largest: float, moving: int, x: torch.Tensor, value: torch.Tensor) -> None:
        progress.update(iteration, largest, moving)
        if record is not None:
            record(iteration, x, value)

    weight, bias, iterations, _ = optimum(prepared[None], targets[None], mask, model.mean[None],
                                          model.std[None], [decay], report)
    progress.close()
    with torch.no_grad():
        model.linear.weight.copy_(weight[0].T)
        model.linear.bias.copy_(bias[0, 0])
    return iterations

def check_finite(cfg: Config, epoch: int, record: dict, weights_finite: bool, progress: "Progress") -> None:
    """Stop a run that diverged: its weights would predict nothing useful and must not be published."""
    broken = [k.replace("_", " ") for k in ("train_loss", "val_loss")
              if k in record and not math.isfinite(record[k])]
    if not weights_finite:
        broken.append("weights")
    if broken:
        progress.close()
        raise UserError(f"--lr {cfg.lr:g}: training diverged in epoch {epoch} ({', '.join(broken)} not "
                        f"finite); "
                        f"try a smaller --lr (the default is {Config.lr}) or a smaller --weight-decay")

class Progress:
    """Per-epoch progress: a tqdm bar in a terminal; one plain line per epoch in a log, CI or pipe.

    A log keeps every carriage-return redraw of a bar, so there it is one readable line an epoch
    instead. TQDM_DISABLE=1 (tqdm's own switch) silences both.
    """

    def __init__(self, desc: str, epochs: int | None, unit: str = "epoch", bar_desc: str | None = None):
        self.desc, self.epochs, self.bar = desc, epochs, None
        self.quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
        if not self.quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm  # only a terminal draws a bar

            self.bar = tqdm(total=epochs, desc=bar_desc or desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, record: dict) -> None:
        values = {k.replace("_", " "): v for k, v in record.items() if k != "epoch"}
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()}, refresh=False)
            self.bar.update()
        elif not self.quiet:
            print(f"{self.desc} epoch {record['epoch']}/{self.epochs}: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

class OptimumProgress(Progress):
    """L-BFGS progress: a bar of iterations in a terminal; in a log, a plain line every few seconds.

    There is no known number of iterations, so it shows how far the largest gradient entry still is
    from the stopping tolerance, and how many of the models are still moving.
    """
    EVERY_SECONDS = 3.0

    def __init__(self, desc: str, models: int):
        super().__init__(desc, None, unit="it", bar_desc=f"{desc} (L-BFGS)")
        self.models, self.printed = models, time.perf_counter()
        if self.bar is None and not self.quiet:
            print(f"{desc}: fitting {f'{models} models' if models > 1 else 'the model'} to the optimum by "
                  f"L-BFGS (stops when every gradient entry is at most {OPTIMUM_TOL:g})", flush=True)

    def update(self, iteration: int, largest: float, moving: int, *iterate) -> None:
        status = f"largest gradient {largest:.2e}" + (f", {moving} of {self.models} models still moving"
                                                       if self.models > 1 else "")
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update()
        elif not self.quiet and (time.perf_counter() - self.printed >= self.EVERY_SECONDS or not moving):
            self.printed = time.perf_counter()
            print(f"{self.desc} L-BFGS iteration {iteration}: {status}", flush=True)

class Batches:
    """Contiguous slices of the (once shuffled) training set, visited in a new order each epoch."""

    def __init__(self, n_examples: int, batch_size: int, seed: int):
        self.slices = [slice(s, min(s + batch_size, n_examples)) for s in range(0, n_examples, batch_size)]
        self.order = torch.Generator().manual_seed(seed)  # on the host: the order is a Python list

    def epoch(self) -> list[slice]:
        return [self.slices[i] for i in torch.randperm(len(self.slices), generator=self.order).tolist()]

def train_epoch(cfg: Config, model: SoftmaxRegression, optimizer: "Optimizer", features: torch.Tensor,
                targets: torch.Tensor, batches: Batches, progress: float,
                span: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the batches; returns the mean training loss and accuracy as device tensors (no host
    sync).

    `progress` is the fraction of the run done before this epoch and `span` the fraction it covers,
    for the learning-rate schedule.
    """
    loss_sum, correct = torch.zeros((), device=features.device), torch.zeros((), device=features.device)
    epoch = batches.epoch()
    for step, batch in enumerate(epoch):
        logits = model.linear(features[batch])
        loss = F.cross_entropy(logits, targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(learning_rate(cfg, progress + span * step / len(epoch)))
        loss_sum += loss.detach() * (batch.stop - batch.start)
        correct += (logits.detach().argmax(1) == targets[batch]).sum()  # as the weights were at each step
    return loss_sum / len(features), correct / len(features)

def learning_rate(cfg: Config, progress: float) -> float:
    """Cosine decay from the peak at progress 0 to zero at progress 1 (the end of the run), or constant."""
    return cfg.lr * (0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1.0)

@torch.no_grad()
def validate(model: SoftmaxRegression, features: torch.Tensor, targets: torch.Tensor) -> dict:
    """Validation loss and accuracy as device tensors (read on the host once per epoch)."""
    return validate_logits(model.linear(features), targets)

def validate_logits(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    return {"val_loss": F.cross_entropy(logits, targets),
            "val_accuracy": (logits.argmax(1) == targets).float().mean()}

@torch.no_grad()
def predict(model: SoftmaxRegression, pixels: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Class probabilities (n, 10) for uint8 pixels, computed in chunks to bound memory."""
    model.eval()
    return torch.cat([model(part).softmax(1) for part in pixels.split(chunk)]) if len(pixels) else \
        torch.empty(0, 10, device=pixels.device)

def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)

# %% [markdown]
# ## 6. Prediction and submission.csv
#
# **`core/submission.py`**: Kaggle's submission format: `ImageId,Label`, ImageId 1..N in test order, Label
# 0-9.

# %%
HEADER = "ImageId,Label"

def submission_text(labels: np.ndarray) -> str:
    ids = np.arange(1, len(labels) + 1)
    return HEADER + "\n" + "".join(f"{i},{label}\n" for i, label in zip(ids.tolist(), labels.tolist()))

def write_submission(path: Path, labels: np.ndarray) -> None:
    write_text(path, submission_text(labels))

# %% [markdown]
# **`core/pipeline.py`**: One training run from data to outputs: split, fit, validate, (refit), predict,
# write.

# %%
import platform
from dataclasses import asdict

def run_training(cfg: Config, data: DigitData, out_dir: Path, timings: dict | None = None) -> dict:
    """Train with validation; write submission.csv, model.pt, the pictures and (last) metrics.json into
    out_dir; return the metrics."""
    timings = dict(timings or {})  # the caller's own, e.g. import and load seconds
    clock = time.perf_counter()
    device = resolve_device(cfg.device)
    pixels, labels = to_device(data.train_images, device), to_device(data.train_labels, device)
    test_pixels = to_device(data.test_images, device)
    timings["to_device"] = time.perf_counter() - clock

    trained = (cross_validated if cfg.folds else held_out)(cfg, data, pixels, labels, timings)
    model, val_idx = trained.pop("model"), trained.pop("val_idx")
    val_probabilities = trained.pop("val_probabilities")
    clock = time.perf_counter()
    test_labels = predict(model, test_pixels).argmax(1).cpu().numpy()
    timings["predict"] = time.perf_counter() - clock
    metrics = {
        "data": data.source,
        **trained,
        "config": asdict(cfg),
        "device": describe_device(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "timings_seconds": timings,
    }
    metrics["examples"]["test"] = len(test_labels)
    clock = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(out_dir, model, test_labels, metrics)
    timings["write"] = time.perf_counter() - clock
    clock = time.perf_counter()
    metrics.update(write_run_pictures(out_dir, model, data.train_images[val_idx], data.train_labels[val_idx],
                                      val_probabilities, metrics["confusion_matrix"], metrics["history"],
                                      metrics.get("cv")))
    timings["pictures"] = time.perf_counter() - clock
    write_json(out_dir / "metrics.json", metrics)
    return metrics

def held_out(cfg: Config, data: DigitData, pixels: torch.Tensor, labels: torch.Tensor, timings: dict) -> dict:
    """One stratified hold-out split: the best epoch on it, optionally refitted on all of train.csv."""
    train_idx, val_idx = stratified_split(data.train_labels, cfg.val_fraction, cfg.seed)
    train_at, val_at = to_device(train_idx, pixels.device), to_device(val_idx, pixels.device)
    val_pixels, val_labels = pixels[val_at], labels[val_at]
    result = fit(cfg, pixels[train_at], labels[train_at], val_pixels, val_labels)
    timings["fit"] = result.seconds
    val_probabilities = predict(result.model, val_pixels)  # kept for errors.png
    validation = validation_report(val_probabilities, val_labels)
    model, refit = result.model, None
    if cfg.refit:
        refitted = fit(cfg, pixels, labels, epochs=result.best_epoch, desc="refit")
        model, timings["refit"] = refitted.model, refitted.seconds
        epochs = "to the optimum (L-BFGS)" if cfg.optimizer == "lbfgs" else result.best_epoch
        refit = {"epochs": epochs, "examples": len(labels)}
    return {"model": model, "val_idx": val_idx, "val_probabilities": val_probabilities,
            "examples": {"train": len(train_idx), "validation": len(val_idx)}, **validation,
            "best_epoch": result.best_epoch, "refit": refit, "history": result.history}

def cross_validated(cfg: Config, data: DigitData, pixels: torch.Tensor, labels: torch.Tensor,
                    timings: dict) -> dict:
    """K-fold CV: every training image is validated once, by the fold fits that did not see it."""
    result = cross_validate(cfg, pixels, labels)
    timings["fit"] = result.seconds
    probabilities = result.oof_probabilities
    validation = validation_report(probabilities, labels)
    n, auto = len(labels), cfg.weight_decay == "auto"
    refit = {"epochs": "to the optimum (L-BFGS)" if auto else cfg.epochs, "examples": n} \
        if cfg.refit or auto else None
    return {"model": result.model, "val_idx": np.arange(n), "val_probabilities": probabilities,
            "examples": {"train": n, "validation": n}, **validation, "best_epoch": cfg.epochs,
            "refit": refit, "history": result.history, "cv": result.summary}

def validation_report(probabilities: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, loss, per-class accuracy and confusion matrix of held-out class probabilities."""
    loss = F.nll_loss(probabilities.clamp_min(1e-12).log(), labels.long()).item()
    predicted = probabilities.argmax(1).cpu().numpy()
    truth = labels.cpu().numpy()
    confusion = confusion_matrix(truth, predicted)
    return {"val_accuracy": float((predicted == truth).mean()), "val_loss": loss,
            "per_class_accuracy": per_class_accuracy(confusion), "confusion_matrix": confusion.tolist()}

def write_outputs(out_dir: Path, model, test_labels: np.ndarray, metrics: dict) -> None:
    write_submission(out_dir / "submission.csv", test_labels)
    # "data": what `predict` defaults to, so a model trained on real data never predicts the sample by
    # surprise.
    extra = {"config": metrics["config"], "val_accuracy": metrics["val_accuracy"], "data": metrics["data"]}
    atomic_write(out_dir / "model.pt", lambda temp: save_model(model, temp, extra))

def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"

# %% [markdown]
# **`core/main.py`**: The kernel's entry point: find the competition data, train, write the outputs, show the
# pictures.
#
# With no arguments on Kaggle it reads the attached competition data under /kaggle/input and writes
# /kaggle/working/submission.csv; --input and --output let it run anywhere. Each output is written
# whole (a temporary file, then a rename) and metrics.json last, so a metrics.json is a finished run's;
# a run replaces the files it writes in the output folder and touches nothing else there.

# %%
import tempfile

def main(argv: list[str] | None = None, settings: dict | None = None) -> int:
    args = parse_kernel_args(argv, settings)
    try:
        return run_kernel(args)
    except (UserError, OSError) as exc:
        if args.debug:
            raise
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"{KERNEL_PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{KERNEL_PROG}: interrupted; each output written so far is complete, the others are as they "
              f"were", file=sys.stderr)
        return 130

def run_kernel(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    start = time.perf_counter()
    found = locate_input(args.input)
    out = args.output or default_output()
    check_output(out)  # before the training, not after it
    data = load_folder(found)
    print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
    metrics = run_training(cfg, data, out, {"load": time.perf_counter() - start})
    for line in report_lines(metrics, out, "output folder", time.perf_counter() - start):
        print(line)
    show_pictures(out, metrics.get("pictures", []))
    return 0

def locate_input(given: Path | None) -> Path:
    """--input when it holds the data itself, else the folder below it (default /kaggle/input) that does."""
    if given is not None and not given.exists():
        raise UserError(f"{given}: no such folder; --input takes the folder holding train.csv and test.csv")
    if given is not None and given.is_file():
        raise UserError(f"{given}: --input takes the folder holding train.csv and test.csv, not a file")
    if given is not None and any((given / name).is_file() for name in ("train.csv", "train.csv.gz")):
        return given
    root = given or KAGGLE_INPUT
    found = find_kaggle_input(root)
    if found is None:
        hint = "pass --input with the folder holding them" if given else "on Kaggle, attach the " \
            "digit-recognizer competition data (Add Input); elsewhere pass --input FOLDER"
        raise UserError(f"{root}: looked in it and every folder below it, and none holds both train.csv and "
                        f"test.csv; {hint}")
    return found

def default_output() -> Path:
    """Kaggle offers the files in /kaggle/working for submission; elsewhere a folder under the current one."""
    on_kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_WORKING.is_dir()
    return KAGGLE_WORKING if on_kaggle else Path("output")

def check_output(folder: Path) -> None:
    """The output folder exists and takes files: said before minutes of training, not after them."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: not a folder; --output takes the folder the outputs go in")
    make_folder(folder, "--output takes the folder the outputs go in")
    try:
        with tempfile.TemporaryFile(dir=folder):  # an unnamed file where the OS can: it leaves no trace
            pass
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the outputs there ({os_reason(exc)})") from None

def show_pictures(folder: Path, names: list[str]) -> None:
    """In a notebook, every picture the run wrote appears under the cell that ran it (it stays a file too)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display

        for name in names:
            display(Image(filename=str(folder / name)))

# %% [markdown]
# ## 7. L-BFGS
#
# **`core/lbfgs.py`**: Full-batch L-BFGS for many independent models at once, in plain tensor ops.
#
# `--weight-decay auto` compares L2 strengths by cross-validation. The penalised loss is convex, so
# each (fold, strength) model has one optimum, and comparing strengths means comparing those optima:
# a fixed budget of Adam epochs stops short of them by an amount that depends on the strength. Every
# model here keeps its own curvature history and its own step length (each inner product is taken
# per model), so batching folds x strengths into one tensor program changes no model's iterates.
# torch.optim.LBFGS is single-model and imports torch._dynamo (about a second); this needs neither.
# A model whose gradient is already small enough stops, and the objective is no longer computed for
# it: the strong penalties converge first, and the batch shrinks to the models still moving.

# %%
from typing import Callable

MEMORY = 10  # curvature pairs kept, as scikit-learn's lbfgs (scipy's default)
ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
MAX_HALVINGS = 30

# Stop when every model's largest gradient entry is this small: scikit-learn's lbfgs default, on the
# same mean-loss-plus-penalty scale, so both stop at the same distance from the optimum.
OPTIMUM_TOL = 1e-4
MAX_ITER = 1000  # scikit-learn's cap in benchmarks/compare.py; the sample needs about a hundred

# (x (models..., params..., with the model dims given by `dims`), the models still moving, a bool
# tensor shaped like one entry per model) -> (per-model objective, its gradient); the objective may
# skip the models not moving and return anything for them.
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# Called once an iteration with (iteration, largest gradient entry left, models still moving, the
# parameters x and each model's objective, both on the device).
Report = Callable[[int, float, int, torch.Tensor, torch.Tensor], None]

def minimise(objective: Objective, x: torch.Tensor, dims: tuple[int, ...], max_iter: int,
             tol: float, report: Report | None = None) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Minimise every model's objective from x; return x, the iterations run and each model's objective.

    `dims` are the dimensions of x that hold one model's parameters (reduced by its inner products);
    the others index the models. A model stops moving once its largest gradient entry is at most
    `tol` (scikit-learn's lbfgs criterion on the same mean-loss scale); the run stops when all have.
    """
    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dims, keepdim=True)

    def amax(a: torch.Tensor) -> torch.Tensor:
        return a.abs().amax(dims, keepdim=True)

    everyone = torch.ones_like(dot(x, x), dtype=torch.bool)
    value, grad = objective(x, everyone)
    value = value.view_as(everyone)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / y.s), oldest first
    iteration = 0
    for iteration in range(1, max_iter + 1):
        active = amax(grad) > tol
        direction = -two_loop(grad, pairs, dot)
        slope = dot(grad, direction)
        # A model whose history points uphill (rounding, near the optimum) falls back to steepest descent.
        uphill = slope >= 0
        direction = torch.where(uphill, -grad, direction)
        slope = torch.where(uphill, -dot(grad, grad), slope)
        # First step of steepest descent: at most unit length, as scipy's first step is.
        step = torch.ones_like(value) if pairs else torch.clamp(1 / dot(grad, grad).sqrt(), max=1.0)
        step = torch.where(active, step, torch.zeros_like(step))
        for _ in range(MAX_HALVINGS):
            trial = x + step * direction
            new_value, new_grad = objective(trial, active)
            new_value = new_value.view_as(value)
            accepted = (new_value <= value + ARMIJO * step * slope) | ~active
            if bool(accepted.all()):  # the one host sync a step
                break
            step = torch.where(accepted, step, step / 2)
        else:
            accepted = new_value <= value
        moved = accepted & active
        s = torch.where(moved, trial - x, torch.zeros_like(x))
        y = torch.where(moved, new_grad - grad, torch.zeros_like(x))
        curvature = dot(s, y)
        # Strictly convex with a positive penalty, so y.s > 0 wherever a model moved; a zero pair is inert.
        pairs.append((s, y, torch.where(curvature > 0, 1 / curvature, torch.zeros_like(curvature))))
        del pairs[:-MEMORY]
        x = torch.where(moved, trial, x)
        grad = torch.where(moved, new_grad, grad)
        value = torch.where(moved, new_value, value)
        left = amax(grad)
        # The one host sync an iteration besides the line search's.
        largest, moving = torch.stack([left.max(), (left > tol).sum().to(left.dtype)]).tolist()
        if report is not None:
            report(iteration, largest, int(moving), x, value)
        if not moving:
            break
    return x, iteration, value

def two_loop(grad: torch.Tensor, pairs: list, dot) -> torch.Tensor:
    """The inverse-Hessian estimate times grad, per model (Nocedal & Wright, algorithm 7.4)."""
    q, alphas = grad.clone(), []
    for s, y, rho in reversed(pairs):
        alpha = rho * dot(s, q)
        q -= alpha * y
        alphas.append(alpha)
    if pairs:
        s, y, rho = pairs[-1]
        yy = dot(y, y)
        q *= torch.where(yy > 0, dot(s, y) / yy.clamp_min(1e-30), torch.ones_like(yy))
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        q += s * (alpha - rho * dot(y, q))
    return q

def optimum(features: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor,
            std: torch.Tensor, decays: list[float],
            report: Report | None = None) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Minimise mean cross-entropy + decay/2 |W|^2 (W on standardised features) for every fold x strength.

    features (folds, n, d), targets and mask (folds, n), mean and std (folds, d). Returns weight
    (folds, d, strengths*10), bias (folds, 1, strengths*10), the iterations and each model's
    objective (folds, strengths).
    """
    n_folds, n, d = features.shape
    strengths, classes = len(decays), 10
    decay = torch.tensor(decays, dtype=features.dtype, device=features.device)
    count = mask.sum(1).to(features.dtype)  # (folds,)
    weights = mask.to(features.dtype)  # (folds, n): padding rows count zero

    def objective(x: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = torch.zeros(n_folds, strengths, dtype=x.dtype, device=x.device), torch.zeros_like(x)
        moving = active.view(n_folds, strengths).cpu()
        for f in range(n_folds):  # one fold's moving strengths at a time: converged models cost nothing
            cols = torch.nonzero(moving[f]).flatten().tolist()
            if cols:
                value[f, cols], grad[f][:, cols] = fold_objective(f, x[f][:, cols], decay[cols])
        return value, grad

    def fold_objective(f: int, part: torch.Tensor, decay: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Value and gradient for one fold's models part (d + 1, s, 10), written out rather than by autograd.

        The gradient's big product is taken as (G^T X)^T: autograd's X^T G runs several times slower on
        the CPU for so few columns.
        """
        s = part.shape[1]
        weight = part[:d].reshape(d, -1)
        scaled = weight / std[f][:, None]  # W (x - m) / std + b = x (W / std) + (b - m (W / std))
        logits = torch.addmm(part[d].reshape(-1) - mean[f] @ scaled, features[f], scaled).view(n, s, classes)
        log_p = logits.log_softmax(-1)
        picked = targets[f][:, None, None].expand(n, s, 1)
        row_weight = weights[f] / count[f]  # (n,): the mean over a fold's own rows, padding at zero
        value = -(row_weight @ log_p.gather(-1, picked)[..., 0]) + decay / 2 * part[:d].square().sum((0, 2))
        residual = log_p.exp_().scatter_add_(-1, picked, torch.full_like(picked, -1, dtype=log_p.dtype))
        # d(mean loss)/d(logits): softmax minus one-hot, each row weighted.
        residual = residual.mul_(row_weight[:, None, None]).view(n, -1)
        bias_grad = residual.sum(0)
        scaled_grad = (residual.T @ features[f]).T - mean[f][:, None] * bias_grad
        grad = torch.empty_like(part)
        grad[:d] = (scaled_grad / std[f][:, None]).view(d, s, classes) + decay[:, None] * part[:d]
        grad[d] = bias_grad.view(s, classes)
        return value, grad

    # One model's parameters: its d weight rows and its bias row (dim 1) by its 10 classes (dim 3).
    x = torch.zeros(n_folds, d + 1, strengths, classes, dtype=features.dtype, device=features.device)
    x, iterations, value = minimise(objective, x, (1, 3), MAX_ITER, OPTIMUM_TOL, report)
    weight = x[:, :d].reshape(n_folds, d, -1).contiguous()
    bias = x[:, d:].reshape(n_folds, 1, -1).contiguous()
    return weight, bias, iterations, value.view(n_folds, strengths)

# %% [markdown]
# ## 8. Cross-validation
#
# **`core/cv.py`**: K-fold cross-validation as one batched tensor program: every fold and every L2 strength at
# once.
#
# Each fold's examples are gathered by index from one tensor of image features and standardised with
# that fold's own training statistics; one batched matmul then scores a batch under every fold's
# weights, and each fold's weights hold one 10-column block per strength, so folds x strengths
# models train in the step a single model would take. The fits run every epoch (no early stopping:
# the held-out fold must not choose anything it then scores), and the held-out accuracy after the
# last epoch is the fold's estimate of the public score. Their mean ± its standard error is the CV
# estimate printed last: the public score should fall within about two standard errors of it.
# With `--weight-decay auto` the same batched
# models are instead fitted to the optimum of their convex penalised loss by full-batch L-BFGS
# (core/lbfgs.py), so strengths are compared at their optima, and the optimum on all the
# training images at the chosen strength is the model submitted (with or without `--refit`).

# %%
from dataclasses import dataclass, field, replace

@dataclass
class CVResult:
    model: SoftmaxRegression  # the one model the submission comes from
    summary: dict  # metrics.json's "cv"
    oof_probabilities: torch.Tensor  # (n, 10): each example scored by the fits that did not train on it
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

def cross_validate(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor) -> CVResult:
    """Fit cfg.folds folds x the strengths tried, choose the strength, and make one model from it."""
    start = time.perf_counter()
    decays = list(WEIGHT_DECAY_GRID) if cfg.weight_decay == "auto" else [float(cfg.weight_decay)]
    fold_of = torch.from_numpy(stratified_folds(labels.cpu().numpy(), cfg.folds, cfg.seed)).to(pixels.device)
    targets = labels.long()
    with torch.no_grad():
        prepared = SoftmaxRegression(cfg.features).prepare(pixels)
    folds = FoldData(prepared, targets, fold_of, cfg.folds, cfg.seed, feature_blocks(cfg.features))
    to_optimum = cfg.weight_decay == "auto" or cfg.optimizer == "lbfgs"
    weight, bias, history = (fit_folds_to_optimum if to_optimum else fit_folds)(cfg, folds, decays)
    with torch.no_grad():
        logits = folds.val_logits(weight, bias)  # (folds, v, strengths, 10)
        accuracy = folds.val_accuracy(logits)  # (folds, strengths)
    mean = accuracy.mean(0)
    stderr = accuracy.std(0) / math.sqrt(cfg.folds)
    chosen = int(torch.argmax(mean))  # the first of equals: the grid runs from weak to strong
    fold_accuracies = accuracy[:, chosen].tolist()
    chosen_cfg = replace(cfg, weight_decay=decays[chosen])
    if to_optimum:
        # The optimum at the chosen strength on all the data (what CV chose the strength for), not an
        # average of fold optima: one more model at 1/(folds x strengths) of the CV's cost; on the
        # sample it scored 0.946 against the average's 0.944 (README).
        model = refit_to_optimum(cfg, prepared, targets, decays[chosen])
        how = f"refit to the optimum on all {len(labels)} training images at weight decay {decays[chosen]:g}"
    elif cfg.refit:
        model = fit(chosen_cfg, pixels, labels, desc="refit").model
        how = f"refit on all {len(labels)} training images at weight decay {decays[chosen]:g}"
    else:
        blocks = (cfg.folds, -1, len(decays), N_CLASSES)
        model = folds.averaged_model(cfg.features, weight.view(blocks)[:, :, chosen],
                                     bias.view(blocks)[:, :, chosen])
        how = f"average of the {cfg.folds} fold models' weights (in pixel space)"
    summary = {"folds": cfg.folds, "accuracy": float(mean[chosen]), "stderr": float(stderr[chosen]),
               "fold_accuracies": fold_accuracies, "weight_decay": decays[chosen], "model": how,
               "grid": [{"weight_decay": d, "accuracy": float(m), "stderr": float(s)}
                        for d, m, s in zip(decays, mean, stderr)]}
    oof = folds.out_of_fold(logits[..., chosen, :].softmax(-1))
    return CVResult(model.eval(), summary, oof, history, time.perf_counter() - start)

def summary_line(cv: dict) -> str:
    """The expected public score, the last line a cross-validated run prints."""
    line = f"expected public score {cv['accuracy']:.3f} ± {cv['stderr']:.3f} ({cv['folds']}-fold CV)"
    if len(cv.get("grid", [])) > 1:
        line += f", weight decay {cv['weight_decay']:g} chosen by it"
    return line

class FoldData:
    """Index tensors for every fold's training and held-out examples, and each fold's standardiser."""

    def __init__(self, prepared: torch.Tensor, targets: torch.Tensor, fold_of: torch.Tensor, folds: int,
                 seed: int, blocks: list[slice]):
        device = prepared.device
        self.prepared, self.targets, self.folds = prepared, targets, folds
        generator = torch.Generator(device=device).manual_seed(seed)
        train = [torch.nonzero(fold_of != f).flatten() for f in range(folds)]
        val = [torch.nonzero(fold_of == f).flatten() for f in range(folds)]
        # Equal lengths make one index matrix; a fold a few examples short repeats a few of its own.
        self.train = torch.stack([pad(t[torch.randperm(len(t), device=device, generator=generator)],
                                      max(map(len, train))) for t in train])  # (folds, n), each row shuffled
        self.n_train = torch.tensor([len(t) for t in train], device=device)
        self.val = torch.stack([pad(v, max(map(len, val))) for v in val])  # (folds, v)
        self.val_mask = torch.stack([torch.arange(self.val.shape[1], device=device) < len(v) for v in val])
        # Each fold's shuffled training examples gathered once, as the hold-out fit shuffles once: every
        # step then reads a contiguous slice (a view) instead of gathering rows, at the cost of holding
        # the data (folds - 1) times (about 0.5 GB at Kaggle size with 5 folds).
        self.train_features = self.gather(self.train)  # (folds, n, 784)
        self.train_targets = targets[self.train]  # (folds, n)
        self.val_features, self.val_targets = self.gather(self.val), targets[self.val]
        self.mean, self.std = fold_standardisers(prepared, fold_of, folds, blocks)
        # Which rows of self.train are a fold's own examples and not the padding's repeats.
        self.train_mask = torch.arange(self.train.shape[1], device=device) < self.n_train[:, None]

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Prepared images (folds, b, 784) of the examples rows (folds, b)."""
        return self.prepared.index_select(0, rows.flatten()).view(*rows.shape, self.prepared.shape[1])

    def logits(self, batch: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Logits (folds, b, strengths*10) of prepared images (folds, b, 784), each fold on its own
        standardised features.

        W (x - m) / s + b = (W / s) x + (b - (W / s) m): the standardiser is folded into the weights,
        so a step only gathers its batch and never rewrites it.
        """
        return standardised_logits(batch, weight, bias, self.mean, self.std)

    def val_logits(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.logits(self.val_features, weight, bias).view(self.folds, self.val.shape[1], -1, N_CLASSES)

    def val_accuracy(self, logits: torch.Tensor) -> torch.Tensor:
        correct = (logits.argmax(-1) == self.val_targets[..., None]) & self.val_mask[..., None]
        # In float64: a fold's accuracy is then exactly its count over its size, as the report prints it.
        return correct.sum(1).double() / self.val_mask.sum(1, keepdim=True)  # (folds, strengths)

    def val_loss(self, logits: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits.permute(0, 3, 1, 2),
                                 self.val_targets[..., None].expand(logits.shape[:3]), reduction="none")
        return (losses * self.val_mask[..., None]).sum(1) / self.val_mask.sum(1, keepdim=True)

    def out_of_fold(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(folds, v, 10) held-out probabilities -> (n, 10) in the examples' own order."""
        result = torch.empty(len(self.targets), N_CLASSES, device=probabilities.device)
        result[self.val[self.val_mask]] = probabilities[self.val_mask]
        return result

    def averaged_model(self, features: str, weight: torch.Tensor, bias: torch.Tensor) -> SoftmaxRegression:
        """One softmax regression whose logits are the mean of the fold models' logits, on raw prepared
        features.

        Fold f computes W_f (x - m_f) / s_f + b_f: linear in x, so the average is again linear, and
        it is written back in terms of a standardiser fitted on all the training examples.
        """
        model = SoftmaxRegression(features).to(self.prepared.device)
        with torch.no_grad():
            model.fit_standardizer(self.prepared)
            raw = weight.transpose(1, 2) / self.std[:, None, :]  # (folds, 10, d): on unstandardised features
            raw_bias = bias[:, 0, :] - torch.einsum("fkp,fp->fk", raw, self.mean)
            mean_weight, mean_bias = raw.mean(0), raw_bias.mean(0)
            model.linear.weight.copy_(mean_weight * model.std)
            model.linear.bias.copy_(mean_bias + mean_weight @ model.mean)
        return model

def standardised_logits(batch: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                        std: torch.Tensor) -> torch.Tensor:
    """W (x - m) / s + b for batch (folds, b, d), weight (folds, d, k), mean and std (folds, d).

    The standardiser is folded into the weights, (W / s) x + (b - (W / s) m), so the features are
    never rewritten.
    """
    scaled = weight / std[..., None]
    shifted = bias - torch.bmm(mean[:, None, :], scaled)
    return torch.baddbmm(shifted, batch, scaled)

def pad(index: torch.Tensor, length: int) -> torch.Tensor:
    return torch.cat([index, index[:length - len(index)]])

def fold_standardisers(prepared: torch.Tensor, fold_of: torch.Tensor, folds: int,
                       blocks: list[slice]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each fold's standardiser (as SoftmaxRegression.fit_standardizer), fitted on its training part only.

    A fold's training part is everything but its held-out part, so its sums are the totals minus
    the held-out sums: one pass over the data for all folds, no copy of any training part.
    """
    device = prepared.device
    held_sum = torch.zeros(folds, prepared.shape[1], device=device).index_add_(0, fold_of, prepared)
    count = (len(fold_of) - torch.bincount(fold_of, minlength=folds)).to(prepared.dtype)[:, None]
    mean = (prepared.sum(0) - held_sum) / count  # (folds, d)
    std = torch.empty_like(mean)
    for block in blocks:  # one shared scale per block, as SoftmaxRegression.fit_standardizer
        squares = prepared[:, block].square().sum(1)
        held_square = torch.zeros(folds, device=device).index_add_(0, fold_of, squares)
        mean_square = (held_square.sum() - held_square)[:, None] / (count * (block.stop - block.start))
        std[:, block] = (mean_square - mean[:, block].square().mean(1, keepdim=True)).clamp_min(1e-12).sqrt()
    return mean, std

def fit_folds(cfg: Config, folds: FoldData,
              decays: list[float]) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Train folds x strengths softmax regressions at once; weight (folds, 784, strengths*10), bias
    (folds, 1, strengths*10)."""
    device, n_models = folds.prepared.device, len(decays) * N_CLASSES
    torch.manual_seed(cfg.seed)
    weight = torch.zeros(folds.folds, folds.prepared.shape[1], n_models, device=device, requires_grad=True)
    bias = torch.zeros(folds.folds, 1, n_models, device=device, requires_grad=True)
    # One strength per 10-column block.
    decay = torch.tensor(decays, device=device).repeat_interleave(N_CLASSES)
    optimizer = make_optimizer(cfg.optimizer, weight, bias, decay)
    n = folds.train.shape[1]
    batches = Batches(n, cfg.batch_size_for(n), cfg.seed)
    history, progress = [], Progress(f"{cfg.folds}-fold CV", cfg.epochs)
    for epoch in range(1, cfg.epochs + 1):
        loss_sum = torch.zeros((), device=device)
        order = batches.epoch()
        for step, batch in enumerate(order):
            logits = folds.logits(folds.train_features[:, batch], weight, bias)
            size = batch.stop - batch.start
            # Summed over examples and divided by the batch size: each model's gradient is that of its own
            # mean loss.
            loss = F.cross_entropy(logits.reshape(-1, N_CLASSES),
                                   folds.train_targets[:, batch, None].expand(-1, -1,
                                                                              len(decays)).reshape(-1),
                                   reduction="sum") / size
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(learning_rate(cfg, (epoch - 1 + step / len(order)) / cfg.epochs))
            loss_sum += loss.detach() * size
        with torch.no_grad():
            logits = folds.val_logits(weight, bias)
            accuracy, val_loss = folds.val_accuracy(logits).mean(0), folds.val_loss(logits).mean(0)
            best = torch.argmax(accuracy)
            record = {"epoch": epoch, "train_loss": loss_sum / (n * folds.folds * len(decays)),
                      "val_loss": val_loss[best], "val_accuracy": accuracy[best]}
            finite = torch.isfinite(weight).all() & torch.isfinite(bias).all()
        record = {k: (v.item() if torch.is_tensor(v) else v) for k, v in record.items()}  # the one host sync
        check_finite(cfg, epoch, record, bool(finite), progress)
        history.append(record)
        progress.update(record)
    progress.close()
    return weight.detach(), bias.detach(), history

def fit_folds_to_optimum(cfg: Config, folds: FoldData,
                         decays: list[float]) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """The optimum of each fold's penalised loss at each strength, by one batched full-batch L-BFGS.

    Same weight layout as fit_folds. Each strength is compared at its own optimum, so the choice
    depends on the data alone, not on how far a fixed number of epochs got at each strength.
    """
    progress = OptimumProgress(f"{cfg.folds}-fold CV", cfg.folds * len(decays))
    weight, bias, iterations, value = optimum(folds.train_features, folds.train_targets, folds.train_mask,
                                              folds.mean, folds.std, decays, progress.update)
    progress.close()
    with torch.no_grad():
        logits = folds.val_logits(weight, bias)
        accuracy, val_loss = folds.val_accuracy(logits).mean(0), folds.val_loss(logits).mean(0)
        best = torch.argmax(accuracy)
        record = {"epoch": iterations, "train_loss": value.mean(0)[best], "val_loss": val_loss[best],
                  "val_accuracy": accuracy[best]}
    # One record, "epoch" counting L-BFGS iterations: the line search only ever lowers each objective,
    # so there is no divergence to watch for.
    return weight, bias, [{k: (v.item() if torch.is_tensor(v) else v) for k, v in record.items()}]

def refit_to_optimum(cfg: Config, prepared: torch.Tensor, targets: torch.Tensor,
                     decay: float) -> SoftmaxRegression:
    """The optimum at `decay` on all the training images, standardised on them all: one model, one fold."""
    model = SoftmaxRegression(cfg.features).to(prepared.device)
    with torch.no_grad():
        model.fit_standardizer(prepared)
    set_to_optimum(model, prepared, targets, decay, "refit")
    return model

# %% [markdown]
# ## 9. Pictures
#
# **`core/pictures.py`**: Pictures of a run: weights.png (what the model learned), errors.png (its most
# confident mistakes),
# confusion.png, learning_curve.png (loss and accuracy per epoch, or CV accuracy per L2 strength) and
# features.png (a few digits through each rung of the feature ladder).
#
# Drawn with tensor reshaping and Pillow's own font; not torchvision, whose import loads torch._dynamo
# (a second of start-up for a few lines of grid layout).

# %%
from PIL import Image, ImageDraw, ImageFont

DIGIT_SIDE = 28
ZOOM = 4  # nearest-neighbour upscaling: a 28-pixel digit becomes 112 pixels, big enough to read
TILE_GAP = 6
ERROR_COUNT = 24
ERROR_COLUMNS = 8
FEATURE_DIGITS = 5
# Every picture a run writes, in the order written (tests and readers list them from here).
PICTURES = ("weights.png", "errors.png", "confusion.png", "learning_curve.png", "features.png")
PICTURE_WHITE, PICTURE_INK, PICTURE_MUTED = (255, 255, 255), (20, 20, 20), (90, 90, 90)
# Blue (evidence against) through white (no evidence) to red (evidence for): ColorBrewer's RdBu.
DIVERGING = torch.tensor([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130],
                          [178, 24, 43]]) / 255.0
CHART_SIZE, CHART_COLOURS = (440, 300), ((33, 102, 172), (178, 24, 43))  # training blue, validation red

def write_run_pictures(out_dir: Path, model, val_pixels, val_labels, val_probabilities, confusion,
                       history: list[dict], cv: dict | None) -> dict:
    """Write the run's pictures (PICTURES); return what to record in metrics.json.

    A run is still worth keeping without its pictures, so a failure here is reported (on stderr and
    as "pictures_error") rather than raised; the tests check that all of them were written.
    """
    pixels = slice(0, DIGIT_SIDE * DIGIT_SIDE)  # the features' pixel block; orientation planes follow it
    drawings = {"weights.png": lambda: draw_weights(weight_patterns(model.linear.weight[:, pixels],
                                                                    model.std[pixels]), model.features),
                "errors.png": lambda: draw_errors(val_pixels, val_labels, val_probabilities),
                "confusion.png": lambda: draw_confusion(confusion),
                "learning_curve.png": lambda: draw_learning_curve(history, cv),
                "features.png": lambda: draw_features(val_pixels[:FEATURE_DIGITS], model.features)}
    written = []
    try:
        for name in PICTURES:
            save_picture(out_dir / name, drawings[name]())
            written.append(name)
    except Exception as exc:  # noqa: BLE001  (see the docstring)
        problem = f"{type(exc).__name__}: {exc}"
        print(f"digit-recognizer: warning: could not draw the run's pictures ({problem}); "
              f"the run itself is complete", file=sys.stderr)
        return {"pictures": written, "pictures_error": problem}
    return {"pictures": written}

def draw_learning_curve(history: list[dict], cv: dict | None):
    """Loss and accuracy per epoch, training and validation; with L2 strengths tried, CV accuracy by each."""
    grid = (cv or {}).get("grid", [])
    if len(grid) > 1:
        ticks = [f"{row['weight_decay']:g}" for row in grid]
        chart = draw_chart("weight decay (L2 strength)", ticks, {
            "CV accuracy": [row["accuracy"] for row in grid],
            "- 1 SE": [row["accuracy"] - row["stderr"] for row in grid],
            "+ 1 SE": [row["accuracy"] + row["stderr"] for row in grid]})
        return caption_picture(chart, [f"{cv['folds']}-fold CV accuracy against the L2 strength (chosen: "
                                       f"{cv['weight_decay']:g})", "each strength fitted to its optimum"])
    step = "epoch" if "epoch" in history[0] else "iteration"  # L-BFGS records its iterations
    ticks = [str(record[step]) for record in history]
    sides = (("training", "train"), ("validation", "val"))
    x_label = "L-BFGS iteration" if step == "iteration" else "epoch"
    charts = [draw_chart(x_label, ticks, {f"{side} {what}": [r[f"{prefix}_{what}"] for r in history]
                                          for side, prefix in sides if f"{prefix}_{what}" in history[0]})
              for what in ("loss", "accuracy")]
    both = Image.new("RGB", (sum(c.width for c in charts), max(c.height for c in charts)), PICTURE_WHITE)
    for k, chart in enumerate(charts):
        both.paste(chart, (k * charts[0].width, 0))
    if step == "iteration":
        return caption_picture(both, ["Learning curve: loss (left) and accuracy (right) per L-BFGS iteration",
                                      "training: the penalised objective   validation: the iterate's"])
    return caption_picture(both, ["Learning curve: loss (left) and accuracy (right) per epoch",
                                  "training: over each epoch's batches as it went   "
                                  "validation: after the epoch"])

def draw_chart(x_label: str, ticks: list[str], series: dict[str, list[float]]):
    """Each series as a line over the points 0..n-1 (labelled by `ticks`), on one shared y scale."""
    values = [v for ys in series.values() for v in ys if math.isfinite(v)]
    low, high = min(values), max(values)
    low, high = low - ((high - low) * 0.08 or 0.01), high + ((high - low) * 0.08 or 0.01)
    (width, height), (left, top, right, bottom) = CHART_SIZE, (64, 34, 16, 46)
    canvas = Image.new("RGB", CHART_SIZE, PICTURE_WHITE)
    draw, font = ImageDraw.Draw(canvas), picture_font(13)

    def at(i: int, value: float) -> tuple[float, float]:
        x = left + (width - left - right) * (i / max(len(ticks) - 1, 1) if len(ticks) > 1 else 0.5)
        return x, top + (height - top - bottom) * (high - value) / (high - low)

    draw.rectangle([left, top, width - right, height - bottom], outline=PICTURE_MUTED)
    for k in range(5):  # the y scale
        value = low + (high - low) * k / 4
        draw_centred(draw, (left - 30, at(0, value)[1]), f"{value:.3f}", font, PICTURE_MUTED)
    for i in range(0, len(ticks), max(1, -(-len(ticks) // 10))):  # at most ten x labels
        draw_centred(draw, (at(i, low)[0], height - bottom + 12), ticks[i], font, PICTURE_MUTED)
    draw_centred(draw, ((left + width - right) // 2, height - 14), x_label, font, PICTURE_INK)
    for n, (name, ys) in enumerate(series.items()):
        colour = CHART_COLOURS[1 if name.startswith("validation") else min(n, 1)]  # validation always red
        points = [at(i, v) for i, v in enumerate(ys) if math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2 if n < 2 else 1)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((left + 8 + 150 * n, 10), name, font=font, fill=colour)
    return canvas

def weight_patterns(weight, std) -> torch.Tensor:
    """The (10, 784) weights per unit of deskewed ink: what raises (red) or lowers (blue) each score.

    The model scores W (x - mean) / std + b. The std is one scale shared by every pixel, so W / std
    keeps the pixels' relative weights, and the border pixels that are almost never inked, and so
    barely trained, stay near zero instead of being blown up as a per-pixel std would do.
    """
    weight = torch.as_tensor(weight).detach().float().cpu()
    return weight / torch.as_tensor(std).detach().float().cpu()

def diverging_colours(values: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] (any shape) -> RGB in [0, 1] with a trailing axis of 3."""
    position = (values.clamp(-1, 1) + 1) / 2 * (len(DIVERGING) - 1)
    low = position.floor().long().clamp(max=len(DIVERGING) - 2)
    frac = (position - low).unsqueeze(-1)
    return DIVERGING[low] * (1 - frac) + DIVERGING[low + 1] * frac

IMAGE_SEEN = {"pixels": "the raw 28x28 image", "deskew": "the deskewed 28x28 image",
              "normalised": "the normalised 28x28 image", "orientations": "the normalised 28x28 image"}

def draw_weights(templates: torch.Tensor, features: str = "deskew"):
    """A labelled 2x5 grid of the ten templates, red where ink raises the digit's score."""
    # One scale for all ten keeps their strengths comparable; the 99.5th percentile keeps a handful
    # of extreme pixels from washing out the rest.
    limit = templates.abs().flatten().quantile(0.995).clamp_min(1e-12)
    colours = diverging_colours(templates / limit).view(10, DIGIT_SIDE, DIGIT_SIDE, 3).permute(0, 3, 1, 2)
    title = [f"What the model learned: one template per digit, over {IMAGE_SEEN[features]}",
             "red: ink here is evidence for the digit   blue: evidence against",
             "pale: little effect (weights per unit of ink, one colour scale for all ten)"]
    if features == "orientations":
        title.append("(the weights on the 392 orientation features are not drawn)")
    return labelled_grid(zoom_digits(colours), [f"digit {d}" for d in range(10)], columns=5, above=True,
                         title=title)

def draw_features(pixels, features: str):
    """Digits exactly as image_features feeds each rung: raw, deskewed, normalised, the 8 pooled planes."""
    pixels = torch.as_tensor(np.asarray(pixels))
    squares = [image_features(pixels, rung)[:, :N_PIXELS].view(-1, 1, DIGIT_SIDE, DIGIT_SIDE).clamp(0, 1)
               for rung in ("pixels", "deskew", "normalised")]
    planes = image_features(pixels, "orientations")[:, N_PIXELS:].view(-1, DIRECTIONS, POOLED, POOLED)
    cell = DIGIT_SIDE // POOLED  # the 7 x 7 pooled planes, shown at the digits' size
    planes = planes.repeat_interleave(cell, -2).repeat_interleave(cell, -1)
    planes = planes / planes.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]  # each digit's scale
    rows = torch.cat([*squares, planes], dim=1)  # (k, 11, 28, 28)
    paper = (1 - rows.flatten(0, 1))[:, None].repeat(1, 3, 1, 1)  # dark ink (or energy) on white
    columns = ["raw", "deskewed", "normalised"] + [f"{360 // DIRECTIONS * k} deg" for k in range(DIRECTIONS)]
    names = columns + [""] * (len(paper) - len(columns))
    title = ["What the linear layer sees: a few digits through each rung of the feature ladder",
             "raw pixels; deskewed; normalised (deskewed, scaled to one height, blurred); then the gradient "
             "energy pointing each way (0 deg: more ink to the right, 90 deg: below), pooled every 4 px",
             f"this run's model was fed: {features}"]
    return labelled_grid(zoom_digits(paper), names, columns=len(columns), above=True, title=title)

def draw_errors(val_pixels, val_labels, val_probabilities):
    """The most confidently wrong validation images, each labelled true -> predicted (probability)."""
    labels = torch.as_tensor(np.asarray(val_labels)).long()
    probabilities = torch.as_tensor(val_probabilities).detach().float().cpu()
    chosen, n_wrong = confident_errors(labels, probabilities, ERROR_COUNT)
    if not chosen:
        return caption_picture(None, [f"No validation image was misclassified ({len(labels)} images)."])
    confidence, predicted = probabilities.max(1)
    # Dark ink on white paper, as the digit was written (before deskewing).
    pixels = torch.as_tensor(np.asarray(val_pixels)).reshape(-1, 1, DIGIT_SIDE, DIGIT_SIDE)[chosen]
    paper = 1.0 - pixels.float().repeat(1, 3, 1, 1) / 255.0
    names = [f"{labels[i].item()} -> {predicted[i].item()}  ({confidence[i].item():.2f})" for i in chosen]
    title = [f"The {len(chosen)} most confidently wrong of {len(labels)} validation images "
             f"({n_wrong} wrong in all)",
             "label: true -> predicted (probability the model gave its prediction)"]
    return labelled_grid(zoom_digits(paper), names, columns=ERROR_COLUMNS, above=False, title=title)

def confident_errors(labels: torch.Tensor, probabilities: torch.Tensor, count: int) -> tuple[list[int], int]:
    """Indices of up to `count` misclassified images, most confident first; and how many were wrong."""
    confidence, predicted = probabilities.max(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)]
    return order[:count].tolist(), len(wrong)

def draw_confusion(confusion):
    """A 10x10 grid of counts, true digits down and predictions across; errors shaded red."""
    counts = np.asarray(confusion, dtype=np.int64)
    n = len(counts)
    totals = counts.sum(1)
    off = counts * (1 - np.eye(n, dtype=np.int64))
    font = picture_font(16)
    cell = max(44, picture_text_size(str(counts.max()), font)[0] + 14)
    shade = torch.as_tensor(off / max(off.max(), 1)).float()
    colours = diverging_colours(shade * 0.9)  # 0 -> white, the most common error -> deep red
    colours[torch.arange(n), torch.arange(n)] = torch.tensor([0.85, 0.85, 0.85])
    matrix = tensor_to_picture(colours.permute(2, 0, 1).repeat_interleave(cell, 1).repeat_interleave(cell, 2))

    small = picture_font(14)
    acc_width = max(picture_text_size("100.0%", font)[0], picture_text_size("accuracy", small)[0]) + 16
    left, top = cell + 30, cell + 30
    canvas = Image.new("RGB", (left + n * cell + acc_width + 10, top + n * cell + 10), PICTURE_WHITE)
    canvas.paste(matrix, (left, top))
    draw = ImageDraw.Draw(canvas)
    for i in range(n + 1):  # cell borders
        draw.line([(left + i * cell, top), (left + i * cell, top + n * cell)], fill=PICTURE_WHITE, width=1)
        draw.line([(left, top + i * cell), (left + n * cell, top + i * cell)], fill=PICTURE_WHITE, width=1)
    for i in range(n):
        centre = top + i * cell + cell // 2
        draw_centred(draw, (left - cell // 2, centre), str(i), font, PICTURE_INK)
        draw_centred(draw, (left + i * cell + cell // 2, top - cell // 2), str(i), font, PICTURE_INK)
        accuracy = f"{counts[i, i] / totals[i]:.1%}" if totals[i] else "-"
        draw_centred(draw, (left + n * cell + acc_width // 2, centre), accuracy, font, PICTURE_INK)
        for j in range(n):
            if counts[i, j] or i == j:
                # White is readable on deep red.
                colour = PICTURE_WHITE if off[i, j] > 0.55 * off.max() else PICTURE_INK
                draw_centred(draw, (left + j * cell + cell // 2, centre), str(counts[i, j]), font, colour)
    draw_centred(draw, (left + n * cell // 2, 12), "predicted", small, PICTURE_MUTED)
    draw_centred(draw, (left + n * cell + acc_width // 2, top - cell // 2), "accuracy", small, PICTURE_MUTED)
    vertical = caption_picture(None, ["true"], size=14, margin=2)
    canvas.paste(vertical.rotate(90, expand=True), (4, top + n * cell // 2 - vertical.width // 2))
    accuracy = np.trace(counts) / max(totals.sum(), 1)
    title = [f"Validation confusion matrix ({totals.sum()} images, accuracy {accuracy:.2%})",
             "rows: true digit   columns: predicted digit   red: mistakes (darker = more)"]
    return caption_picture(canvas, title)

def zoom_digits(images: torch.Tensor) -> torch.Tensor:
    return images.repeat_interleave(ZOOM, -2).repeat_interleave(ZOOM, -1)

def labelled_grid(tiles: torch.Tensor, names: list[str], columns: int, above: bool, title: list[str]):
    """A grid of (n, 3, h, w) tiles in [0, 1], each with its name in a band above or below."""
    font = fitting_font(names, tiles.shape[-1] + TILE_GAP, 16)
    band = max(picture_text_size(name, font)[1] for name in names) + 10
    banded = torch.ones(len(tiles), 3, tiles.shape[-2] + band, tiles.shape[-1])
    body = slice(band, None) if above else slice(0, tiles.shape[-2])
    banded[:, :, body] = tiles
    grid = tensor_to_picture(tile_grid(banded, columns))
    draw = ImageDraw.Draw(grid)
    height, width = banded.shape[-2:]
    for k, name in enumerate(names):
        x = TILE_GAP + (k % columns) * (width + TILE_GAP)
        y = TILE_GAP + (k // columns) * (height + TILE_GAP)
        band_top = y if above else y + tiles.shape[-2]
        draw_centred(draw, (x + width // 2, band_top + band // 2), name, font, PICTURE_INK)
    return caption_picture(grid, title)

def caption_picture(picture, lines: list[str], size: int = 16, margin: int = 12):
    """The picture (or nothing) below centred lines of text, widened so no line is cut off."""
    font = picture_font(size)
    sizes = [picture_text_size(line, font) for line in lines]
    line_height = max(h for _, h in sizes) + 6
    width = max([w for w, _ in sizes] + [picture.width if picture else 0]) + 2 * margin
    text_height = len(lines) * line_height + margin
    canvas = Image.new("RGB", (width, text_height + (picture.height + margin if picture else 0)),
                       PICTURE_WHITE)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw_centred(draw, (width // 2, margin + k * line_height + line_height // 2), line, font,
                     PICTURE_INK if k == 0 else PICTURE_MUTED)
    if picture:
        canvas.paste(picture, ((width - picture.width) // 2, text_height))
    return canvas

def picture_font(size: int):
    """Pillow's built-in font: scalable since Pillow 10.1, the small fixed bitmap font before."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()

def fitting_font(texts: list[str], width: int, size: int):
    """The largest font up to `size` in which every text fits the width."""
    while True:
        font = picture_font(size)
        if size <= 9 or max(picture_text_size(t, font)[0] for t in texts) <= width - 4:
            return font
        size -= 1

def picture_text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    return right - left, bottom - top

def draw_centred(draw, centre: tuple[int, int], text: str, font, fill) -> None:
    # Centred by the measured box, not by anchor="mm", which older Pillow refuses for its bitmap font.
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((centre[0] - (left + right) / 2, centre[1] - (top + bottom) / 2), text, font=font, fill=fill)

def tile_grid(tiles: torch.Tensor, columns: int) -> torch.Tensor:
    """(n, 3, h, w) tiles in rows of `columns`, TILE_GAP of white around and between them: (3, H, W)."""
    n, channels, height, width = tiles.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    padded = torch.ones(rows * columns, channels, height + TILE_GAP, width + TILE_GAP)
    padded[:n, :, TILE_GAP:, TILE_GAP:] = tiles  # each tile with its gap above and to its left
    grid = padded.view(rows, columns, channels, height + TILE_GAP, width + TILE_GAP).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(channels, rows * (height + TILE_GAP), columns * (width + TILE_GAP))
    return torch.nn.functional.pad(grid, (0, TILE_GAP, 0, TILE_GAP), value=1.0)  # the gap after the last ones

def tensor_to_picture(rgb: torch.Tensor):
    """(3, h, w) in [0, 1] -> an RGB Pillow image."""
    return Image.fromarray((rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())

def save_picture(path: Path, image) -> None:
    atomic_write(path, lambda temp: image.save(temp, format="PNG"))

# %% [markdown]
# ## 10. Helpers
#
# **`core/optimizer.py`**: Adam and Nesterov SGD as a few plain tensor updates.
#
# torch.optim imports torch._dynamo on its first step: about a second of start-up, more than a whole
# fit on the sample. These updates do the same arithmetic in the same order as torch's single-tensor
# implementations (what torch.optim runs on the CPU), so a run's numbers are unchanged. They also take
# a weight-decay tensor that broadcasts over the weights, which batched fits (one weight matrix per
# fold and per penalty) need.

# %%
BETAS = (0.9, 0.999)
EPS = 1e-8
MOMENTUM = 0.9

class Optimizer:
    """Updates params from their .grad; `decays` holds each param's L2 strength (a float or a tensor)."""

    def __init__(self, params: list[torch.Tensor], decays: list):
        self.params, self.decays = params, decays
        self.steps = 0

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.steps += 1
        for i, (param, decay) in enumerate(zip(self.params, self.decays)):
            self.update(i, param, with_decay(param.grad, param, decay), lr)

    def update(self, i: int, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        raise NotImplementedError

def with_decay(grad: torch.Tensor, param: torch.Tensor, decay) -> torch.Tensor:
    """The gradient of loss + decay/2 * |param|^2."""
    if torch.is_tensor(decay):
        return grad.addcmul(param, decay)
    return grad.add(param, alpha=decay) if decay != 0 else grad

class Adam(Optimizer):
    def __init__(self, params: list[torch.Tensor], decays: list):
        super().__init__(params, decays)
        self.means = [torch.zeros_like(p) for p in params]
        self.squares = [torch.zeros_like(p) for p in params]

    def update(self, i: int, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        beta1, beta2 = BETAS
        mean, square = self.means[i], self.squares[i]
        mean.lerp_(grad, 1 - beta1)
        square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(self.steps)
        step_size = lr / (1 - beta1**step)
        denom = (square.sqrt() / (1 - beta2**step) ** 0.5).add_(EPS)
        param.addcdiv_(mean, denom, value=-step_size)

class NesterovSGD(Optimizer):
    def __init__(self, params: list[torch.Tensor], decays: list):
        super().__init__(params, decays)
        self.velocities: list[torch.Tensor | None] = [None] * len(params)

    def update(self, i: int, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        velocity = self.velocities[i]
        if velocity is None:
            velocity = self.velocities[i] = grad.detach().clone()
        else:
            velocity.mul_(MOMENTUM).add_(grad, alpha=1)
        param.add_(grad.add(velocity, alpha=MOMENTUM), alpha=-lr)

def make_optimizer(name: str, weight: torch.Tensor, bias: torch.Tensor, weight_decay) -> Optimizer:
    # L2 on the weights only: penalising the bias would shift the class priors.
    kind = NesterovSGD if name == "sgd" else Adam
    return kind([weight, bias], [weight_decay, 0.0])

# %% [markdown]
# **`core/checks.py`**: Refusing, in one line, the options no run could use, before minutes of training rather
# than after.
#
# `train`, `kernels push` and the kernel all ask here, so one input is refused or taken by all alike.

# %%
FLOAT32_MAX = 3.4028234663852886e38
MAX_EPOCHS = 1_000_000  # far beyond any useful run; a bigger number would never finish
MAX_SEED = 2**64 - 1  # the largest seed torch's and numpy's generators take
MAX_FOLDS = 100

def check_config(cfg, train_labels=None) -> None:
    """Raise UserError for a value no run could use; with train.csv's labels, also for a hold-out split
    or folds that cannot be made from them."""
    if cfg.weight_decay == "auto" and not cfg.folds:
        raise UserError("--weight-decay auto chooses the penalty by cross-validation; add --folds 5 "
                        "(or another K >= 2)")
    for name, accepted, expected in RULES:
        value = getattr(cfg, name)
        if not accepted(value):
            raise UserError(f"--{name.replace('_', '-')} must be {expected}, got {value}")
    if train_labels is not None:
        counts = Counter(train_labels.tolist() if hasattr(train_labels, "tolist") else train_labels)
        problem = folds_problem(counts, cfg.folds) if cfg.folds else \
            holdout_problem(counts, cfg.val_fraction)
        if problem:
            raise UserError(problem)

# check_config's rules, in order: (field, whether a value is accepted, what it must be). NaN fails each.
RULES = (
    ("val_fraction", lambda v: 0 < v < 1, "between 0 and 1 (exclusive)"),
    ("seed", lambda v: 0 <= v <= MAX_SEED, "an integer from 0 to 2**64-1"),
    ("epochs", lambda v: v >= 1, "a positive integer"),
    ("epochs", lambda v: v <= MAX_EPOCHS, f"at most {MAX_EPOCHS}"),
    ("patience", lambda v: v >= 0, "zero (never stop early) or a positive integer"),
    ("batch_size", lambda v: v >= 0, "a positive integer (or 0 for auto)"),
    ("lr", lambda v: 0 < v < math.inf, "a positive number"),
    ("weight_decay", lambda v: v == "auto" or 0 <= v < math.inf, "zero or a positive number"),
    ("folds", lambda v: v == 0 or 2 <= v <= MAX_FOLDS, f"0 (one hold-out split) or from 2 to {MAX_FOLDS}"),
    # The weights are 32-bit floats: a rate or penalty beyond this is infinity to them.
    ("lr", lambda v: v <= FLOAT32_MAX, f"at most {FLOAT32_MAX:.3g} (the weights are 32-bit floats)"),
    ("weight_decay", lambda v: v == "auto" or v <= FLOAT32_MAX,
     f"at most {FLOAT32_MAX:.3g} (the weights are 32-bit floats)"),
)

def holdout_problem(counts: Counter, val_fraction: float) -> str | None:
    """Why the stratified hold-out split (core/split.py) cannot be made from these per-digit counts, if it
    cannot."""
    for digit in range(10):
        n_val = int(round(val_fraction * counts[digit]))
        if n_val == 0 or n_val == counts[digit]:
            side = "validation" if n_val == 0 else "training"
            return (f"--val-fraction {val_fraction} leaves digit {digit} ({counts[digit]} examples in "
                    f"train.csv) with no {side} example; use a larger train.csv or another fraction")
    return None

def folds_problem(counts: Counter, folds: int) -> str | None:
    """Why `folds` stratified folds cannot be made from these per-digit counts, if they cannot."""
    digit = min(range(10), key=lambda d: counts[d])
    if counts[digit] < folds:
        return (f"--folds {folds}: digit {digit} has only {counts[digit]} examples in train.csv, so some "
                f"fold would hold none; use fewer folds or a larger train.csv")
    return None

# %% [markdown]
# **`core/ignored.py`**: The flags a run does not use: `--epochs 20` under L-BFGS is said to be ignored, never
# silently dropped.

# %%
# Which fields a config does not use: (when, those fields, why). The notice, `runs` and the submit message
# read it, so a setting that was ignored is never shown as one that was used. A new field or mode adds its
# row here.
NOT_APPLYING = (
    (lambda c: bool(c.folds), ("val_fraction", "patience"),
     "with --folds every training image is validated once, by the folds, and each fold fit runs every epoch"),
    (lambda c: c.weight_decay == "auto", ("epochs", "lr", "batch_size", "optimizer", "schedule", "patience"),
     "--weight-decay auto fits each strength to its optimum by full-batch L-BFGS"),
    (lambda c: c.optimizer == "lbfgs", ("epochs", "lr", "batch_size", "schedule", "patience"),
     "--optimizer lbfgs fits the model to the optimum of its penalised loss: no epochs, rate, batches or "
     "early stop"),
)

def not_applying(cfg) -> dict[str, str]:
    """Each field `cfg` does not use (whatever its value), with why."""
    moot = {}
    for applies, names, why in NOT_APPLYING:
        if applies(cfg):
            moot.update({name: moot.get(name, why) for name in names})
    return moot

def ignored_notice(cfg) -> str | None:
    """One line naming the flags set away from their defaults that this run does not use, or None."""
    moot, default = not_applying(cfg), type(cfg)()
    given = [name for name in moot if getattr(cfg, name) != getattr(default, name)]
    if not given:
        return None
    flags = [f"--{name.replace('_', '-')} {getattr(cfg, name)}" for name in given]
    reasons = list(dict.fromkeys(moot[name] for name in given))
    one = len(flags) == 1
    return f"note: {' and '.join(flags)} {'does' if one else 'do'} not apply here and " \
           f"{'is' if one else 'are'} ignored: {'; '.join(reasons)}"

# %% [markdown]
# **`core/metrics.py`**: Scores of a labelling: accuracy, per-class accuracy, confusion matrix.

# %%
def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Rows are true digits, columns predicted digits."""
    pairs = truth.astype(np.int64) * n_classes + predicted
    return np.bincount(pairs, minlength=n_classes**2).reshape(n_classes, n_classes)

def per_class_accuracy(confusion: np.ndarray) -> list[float]:
    totals = confusion.sum(1)
    return [float(confusion[i, i] / totals[i]) if totals[i] else float("nan") for i in range(len(confusion))]

def format_confusion(confusion: np.ndarray) -> str:
    """A text table: true digits down, predictions across, per-class accuracy on the right."""
    header = "true\\pred " + " ".join(f"{d:>5}" for d in range(len(confusion))) + f"{'acc':>8}"
    lines = [header]
    for digit, (row, acc) in enumerate(zip(confusion, per_class_accuracy(confusion))):
        lines.append(f"{digit:>9} " + " ".join(f"{n:>5}" for n in row) + f"  {acc:6.1%}")
    return "\n".join(lines)

# %% [markdown]
# **`core/report.py`**: What a finished run prints, the same after `digit-recognizer train` and at the end of
# the kernel's log.

# %%
def report_lines(metrics: dict, folder: Path, folder_kind: str, total_seconds: float) -> list[str]:
    """The run's summary; last the submission, the validation accuracy and (with --folds) the CV
    estimate: what one looks for first.

    `folder_kind` names where the outputs went: "run folder" locally, "output folder" in the kernel.
    """
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in metrics["timings_seconds"].items())
    if metrics.get("cv"):
        fitted = f"{metrics['cv']['folds']}-fold CV"
    elif metrics["config"].get("optimizer") == "lbfgs":
        fitted = f"fitted to the optimum by L-BFGS in {metrics['best_epoch']} iterations"
    else:
        fitted = fitted_epochs(metrics)
    lines = [f"device: {metrics['device']}; {fitted}",
             f"timings: {timings}; total {total_seconds:.2f}s",
             "validation confusion matrix (rows: true digit, columns: predicted) and per-class accuracy:",
             format_confusion(np.array(metrics["confusion_matrix"]))]
    if metrics.get("cv"):  # no hold-out split to refit over: the CV says how its model was made
        lines.append(f"predictions from the {metrics['cv']['model']}")
    elif metrics["refit"]:
        epochs = metrics['refit']['epochs']
        lines.append(f"predictions from a refit on train+validation ({metrics['refit']['examples']} images, "
                     f"{epochs if isinstance(epochs, str) else f'{epochs} epochs'})")
    lines.append(f"{folder_kind}: {folder}")
    if metrics.get("pictures"):
        lines.append(f"pictures: {', '.join(metrics['pictures'])} in the {folder_kind}")
    lines.append(f"submission: {folder / 'submission.csv'}")
    kind = "out-of-fold: each image validated by the fold fit that did not see it" if metrics.get("cv") else \
        "held out"
    lines.append(f"validation accuracy: {metrics['val_accuracy']:.4f} ({metrics['examples']['validation']} "
                 f"images, {kind})")
    if metrics.get("cv"):
        lines.append(summary_line(metrics["cv"]))
    return lines

def fitted_epochs(metrics: dict) -> str:
    """The best epoch, and whether early stopping ended the run before its last epoch."""
    best, planned, ran = metrics["best_epoch"], metrics["config"]["epochs"], len(metrics.get("history") or [])
    if 0 < ran < planned:
        waited = ran - best
        return (f"best epoch {best}; stopped early after epoch {ran} of {planned} ({waited} epoch"
                f"{'s' if waited != 1 else ''} without a better validation accuracy, --patience "
                f"{metrics['config']['patience']})")
    return f"best epoch {best} of {planned}"

# %% [markdown]
# **`core/csvtable.py`**: Strict, fast parsing of Kaggle's digit CSVs into integer arrays.
#
# The fast path hands the file to pandas' C parser with a fixed integer dtype. Only when that
# fails (the header included), or a value is out of range, does the caller's slower scan (csv_diagnosis,
# run locally) name the exact line and column.

# %%
import re

PIXELS = [f"pixel{i}" for i in range(784)]
TRAIN_COLUMNS = ["label", *PIXELS]
TEST_COLUMNS = PIXELS
PIXEL_LIMITS = {name: 255 for name in PIXELS}  # each column's largest value
TRAIN_LIMITS = {"label": 9, **PIXEL_LIMITS}
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# After the header, a Kaggle CSV holds nothing but digits, commas and line breaks.
CSV_BYTES = b"0123456789,\r\n"
_NOT_CSV_BYTE = re.compile(rb"[^0-9,\r\n]")
_LONE_CR = re.compile(rb"\r(?!\n)")

def parse_table(name: str, raw: bytes, columns: list[str], limits: dict[str, int], path: Path | None = None,
                diagnose=None) -> np.ndarray:
    """Parse CSV bytes with exactly `columns` into an (rows, columns) uint8 array.

    `limits` maps a column name to its largest allowed value (pixels: 255, label: 9). `path`, when
    the bytes are that plain file's, lets pandas read the file itself, which is faster than a buffer.
    Raises UserError naming the file and what is wrong; `diagnose(name, text, columns, limits)`, when
    given, is called first on a bad header or row to name the exact column, line and cell.
    """
    raw = raw[len(BOM):] if raw.startswith(BOM) else raw

    # Raises the exact culprit where the caller can find it; the kernel keeps the short messages.
    def diagnosed():
        if diagnose:
            diagnose(name, raw, columns, limits)

    body = _body(name, raw, columns, diagnosed)
    if body.translate(None, CSV_BYTES):  # a C-speed scan; the regex only runs to find the culprit
        diagnosed()
        line_no = 2 + body.count(b"\n", 0, _NOT_CSV_BYTE.search(body).start())
        raise UserError(f"{name}: line {line_no}: a character other than a digit, comma or line break; "
                        f"expected integers separated by commas")
    # pandas would split a line at a lone carriage return, making two rows of one.
    lone_cr = b"\r" in body and _LONE_CR.search(body)
    if lone_cr:
        line_no = 2 + body.count(b"\n", 0, lone_cr.start())
        raise UserError(f"{name}: line {line_no}: a carriage return without a line feed; expected lines "
                        f"ending in LF or CRLF")
    try:
        # uint8 makes pandas itself refuse values above 255; any refusal is then located exactly.
        source, skip = (path, 1) if path is not None else (io.BytesIO(body), 0)
        import pandas as pd  # here, not at the top: a run whose parses are cached never pays its import

        table = pd.read_csv(source, skiprows=skip, header=None, dtype=np.uint8, engine="c", na_filter=False)
    except (ValueError, OverflowError) as exc:  # pandas' ParserError is a ValueError
        diagnosed()
        raise UserError(f"{name}: could not be parsed as a Kaggle digit CSV ({exc})") from None
    values = table.to_numpy()
    maxima = np.array([limits[c] for c in columns])
    if values.shape[1] != len(columns) or (values > maxima).any():
        diagnosed()
        raise UserError(f"{name}: could not be parsed as a Kaggle digit CSV")  # never silently wrong
    return np.ascontiguousarray(values)

def _body(name: str, raw: bytes, columns: list[str], diagnose) -> bytes:
    """Check the header line (file line 1); return the data rows after it."""
    if not raw or raw.isspace():  # not strip(): that copies the whole file
        raise UserError(f"{name}: the file is empty; expected a header line starting "
                        f"'{','.join(columns[:3])},...'")
    end = raw.find(b"\n")
    header_line, body = (raw, b"") if end < 0 else (raw[:end], raw[end + 1:])
    if raw.startswith(UTF16_BOMS) or b"\0" in header_line:  # UTF-16 (Excel's "Unicode text") or UTF-32
        raise UserError(f"{name}: not UTF-8/ASCII text (it looks like UTF-16); save it as UTF-8 "
                        f"(CSV UTF-8 in Excel)")
    if b"\r" in header_line.strip():
        raise UserError(f"{name}: line 1: a carriage return without a line feed; expected lines ending "
                        f"in LF or CRLF")
    if header_line.decode("utf-8", errors="replace").strip().split(",") != columns:
        diagnose()  # which column is missing, extra, repeated or out of place
        raise UserError(f"{name}: header: expected exactly the columns {columns[0]},...,{columns[-1]} "
                        f"in order")
    if not body or body.isspace():
        raise UserError(f"{name}: has a header but no data rows")
    return body

# Kaggle's largest file, train.csv, is 77 MB; a CSV (or what a .gz or zip entry unpacks to) beyond this
# is not one of its files, and reading it whole could exhaust memory (a gz bomb), so it is refused.
MAX_CSV_BYTES = 512 << 20

class NotRegularFile(OSError):
    """A folder, FIFO or device where a CSV file was expected: reading it would fail or never end."""

def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is a .gz; at most MAX_CSV_BYTES, from a regular file only."""
    raw = read_raw(path)
    return gunzip(str(path), raw) if path.suffix == ".gz" else raw

def read_raw(path: Path) -> bytes:
    """The bytes on disk of a regular file of at most MAX_CSV_BYTES; one UserError line otherwise."""
    try:
        with open(path, "rb", opener=_open_regular) as handle:
            data = handle.read(MAX_CSV_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except NotRegularFile as exc:
        raise UserError(f"{path}: is {exc.strerror}, not a regular file; expected a CSV file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CSV_BYTES:
        raise UserError(f"{path}: larger than {MAX_CSV_BYTES >> 20} MiB, far beyond Kaggle's largest file "
                        f"(train.csv, 77 MB); expected a Kaggle digit CSV")
    return data

def _open_regular(name, flags):
    import os
    import stat

    fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0))  # opening a FIFO must not wait for a writer
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise NotRegularFile(0, kind)
    return fd

def gunzip(name: str, raw: bytes, limit: int = MAX_CSV_BYTES) -> bytes:
    """A gzip file's contents (every member), refused past `limit` bytes instead of filling memory."""
    import zlib

    out, data = [], raw
    try:
        while data:
            unpack = zlib.decompressobj(wbits=31)
            out.append(unpack.decompress(data, limit + 1 - sum(map(len, out))))
            if sum(map(len, out)) > limit:
                raise UserError(f"{name}: unpacks to more than {limit >> 20} MiB, far beyond Kaggle's "
                                f"largest file (train.csv, 77 MB); expected a gzipped Kaggle digit CSV")
            if not unpack.eof:
                raise EOFError("the gzip data ends early")
            data = unpack.unused_data.lstrip(b"\0")  # the next member, if any (padding allowed)
    except (zlib.error, EOFError) as exc:
        raise UserError(f"{name}: cannot be read (not a complete gzip file: {exc})") from None
    return b"".join(out)

# %% [markdown]
# **`core/fileio.py`**: Writing each file whole: a temporary name beside it, then one rename into place.
#
# Every write goes through here, so a failure of the operating system (a read-only folder, a full
# disk, a missing folder) becomes one UserError naming the path and the reason, in one place.

# %%
import errno
import json
from contextlib import suppress

def os_reason(exc: OSError) -> str:
    """'no space left on device', 'read-only file system', ... as a lower-case phrase."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]

def describe_os_error(exc: OSError) -> str:
    """One line for an OSError nobody caught nearer its cause: the path involved and the reason."""
    where = exc.filename if exc.filename is not None else "?"
    return f"{os.fsdecode(where) if isinstance(where, bytes) else where}: {os_reason(exc)}"

def write_failure(path: Path, exc: OSError) -> UserError:
    if exc.errno == errno.ENOENT and not path.parent.is_dir():
        return UserError(f"{path}: cannot write it: the folder {path.parent} does not exist")
    return UserError(f"{path}: cannot write it ({os_reason(exc)}); nothing was written")

def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temp) on a temporary name beside `path`, then rename it into place.

    An OSError (full disk, read-only folder) becomes one UserError naming `path`; the temporary
    file is removed whatever happens, so nothing half-written is left.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        with suppress(OSError):
            temp.unlink(missing_ok=True)

def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))

def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")

def make_folder(folder: Path, purpose: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{folder}: not a folder; {purpose}") from None
    except OSError as exc:  # a folder we may not write in, a full disk
        raise UserError(f"{folder}: cannot create it ({os_reason(exc)}); {purpose}") from None

# %% [markdown]
# ## Run
#
# Train, print the per-epoch lines, the confusion matrix and the validation accuracy (with `folds`, the
# CV estimate), show the pictures, and write the files.

# %%
if __name__ == "__main__":
    # Only a failure raises SystemExit: a notebook cell reports even SystemExit(0) as an error.
    status = main(settings=SETTINGS)
    if status:
        raise SystemExit(status)
