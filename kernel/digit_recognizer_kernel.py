# %% [markdown]
# # Kaggle Digit Recognizer: softmax regression in PyTorch
#
# One linear layer from fixed features of each image to 10 digit scores, with cross-entropy: each digit
# deskewed, scaled to one height and blurred, plus pooled gradient-direction planes (section 3),
# standardised (4) and fitted to the optimum of its L2-penalised loss by L-BFGS (5, 7), or by epochs of
# Adam with early stopping on a stratified hold-out (10); with `folds`, k-fold cross-validation estimates
# the public score (8). `submission.csv`, `metrics.json`, `model.pt` and the pictures go to /kaggle/working.
#
# Edit the settings below after *Copy & Edit*, then *Run All*; as a script, `python digit_recognizer_kernel.py
# --input DATA --output OUT [--folds 5 ...]` (`--help` lists the flags). GENERATED from the digit_recognizer
# package's `core/` by `digit-recognizer bundle`: the code tested locally is the code that runs here.

# %% [markdown]
# ## Settings
#
# The run's options (`digit-recognizer kernels push --folds 5 ...` writes them into the copy it pushes);
# run as a script, a command-line flag overrides its setting.

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
# **`core/config.py`**: The one training configuration: every option of a run, and how torch's threads wait.

# %%
import os
from dataclasses import dataclass, field

# Before torch loads: its OpenMP threads spin at every barrier, stealing a busy machine's time (one of two
# cores busy, `train` at Kaggle size took twice as long; benchmarks/README.md). A user's own setting stays.
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# L2 strengths --weight-decay auto tries: the sample's optimum, 0.003, sits inside. 0.1 lost 0.7 points of
# CV on the sample, and more data only favours weaker penalties (README).
WEIGHT_DECAY_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
# The feature ladder (core/features.py), from what the tutorials feed a linear model to the default.
FEATURE_RUNGS = ("pixels", "deskew", "normalised", "orientations")

def option(default, about: str, choices: tuple | None = None):
    """A Config field: its default, what it does (its flag's --help) and the values it takes."""
    return field(default=default, metadata={"help": about, "choices": choices})

@dataclass(frozen=True)
class Config:
    """Every option of a run, each also a flag of `train` and of the kernel (val_fraction: --val-fraction)."""
    seed: int = option(0, "random seed for the split, initialisation and batch order")
    val_fraction: float = option(0.1, "fraction of train.csv held out, stratified by label, to validate on")
    epochs: int = option(10, "passes over the training split (the learning-rate schedule spans them all)")
    patience: int = option(3, "stop after this many epochs without a better validation accuracy; 0 = never")
    batch_size: int = option(0, "examples per optimiser step; 0 = auto: 256, or 32 steps an epoch on big "
                             "data")
    lr: float = option(0.003, "peak learning rate")
    weight_decay: float | str = option(3e-3, "L2 penalty on the weights, or 'auto': the best of "
                                       f"{', '.join(map(str, WEIGHT_DECAY_GRID))} by cross-validation "
                                       "(needs --folds)")
    optimizer: str = option("lbfgs", "lbfgs: the optimum of the penalised loss (no epochs); adam or sgd: "
                            "epochs, early stop", ("adam", "sgd", "lbfgs"))
    schedule: str = option("cosine", "learning-rate schedule over the run", ("cosine", "constant"))
    features: str = option("orientations", "what the linear layer sees: raw pixels; deskewed; normalised "
                           "(deskewed, one height, blurred); orientations (normalised + 392 pooled "
                           "gradient-direction planes)", FEATURE_RUNGS)
    refit: bool = option(False, "retrain on all of train.csv for the predictions, at the best epoch (with "
                         "--folds always done)")
    folds: int = option(0, "K >= 2: K-fold cross-validation, the expected public score +- its standard "
                        "error; 0: none")
    device: str = option("auto", "where to train: auto picks CUDA when available", ("auto", "cpu", "cuda"))

    def batch_size_for(self, n_examples: int) -> int:
        """Auto: 256, or 32 steps an epoch on big data (as accurate there, with less per-step overhead)."""
        return self.batch_size or max(256, -(-n_examples // 32))

# %% [markdown]
# **`core/flags.py`**: The kernel's command line: where Kaggle keeps the data and outputs, and a flag per
# setting.
#
# Only the standard library is imported up to here, so `--help` and a mistyped flag are answered before
# torch and pandas load. A flag given on the command line overrides its setting.

# %%
import argparse
import sys
from dataclasses import fields
from pathlib import Path

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
KERNEL_PROG = "digit_recognizer_kernel.py"

def parse_kernel_args(argv: list[str] | None = None, settings: dict | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=KERNEL_PROG, description="Train multinomial logistic regression on "
                                     "Kaggle's Digit Recognizer data, validate it and write submission.csv.")
    parser.add_argument("--input", type=Path, help="the folder holding train.csv and test.csv, or a folder "
                        f"to search below (default: search {KAGGLE_INPUT})")
    parser.add_argument("--output", type=Path, help="where submission.csv, model.pt and metrics.json go "
                        f"(default: {KAGGLE_WORKING} on Kaggle, else ./output)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (default: off)")
    add_config_arguments(parser)
    unknown = sorted(set(settings or {}) - {f.name for f in fields(Config)})
    if unknown:
        parser.error(f"SETTINGS has no option {unknown[0]!r}; the options are those of --help, "
                     f"with _ for - ({', '.join(f.name for f in fields(Config))})")
    # Each setting is read as its flag, so it is checked exactly as the flag is; a flag given after it wins.
    given = []
    for name, value in (settings or {}).items():
        flag = "--" + name.replace("_", "-")
        given += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    if argv is None:  # in a notebook cell sys.argv holds the Jupyter launcher's flags, not ours
        argv = [] if "ipykernel" in sys.modules else sys.argv[1:]
    return parser.parse_args(given + argv)

def weight_decay_value(text: str) -> float | str:
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
        about = f.metadata["help"]
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=about)
        else:
            kind = weight_decay_value if f.name == "weight_decay" else type(f.default)
            parser.add_argument(flag, type=kind, default=f.default, choices=f.metadata["choices"],
                                help=f"{about} (default: {f.default})")

def config_from_args(args: argparse.Namespace) -> Config:
    """The config the flags make, checked; a flag it will not use is said on stderr, not silently dropped."""
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config)})
    check_config(cfg)
    notice = ignored_notice(cfg)
    if notice:
        print(notice, file=sys.stderr)
    return cfg

if __name__ == "__main__":  # answers --help and a bad flag before torch and pandas are imported
    parse_kernel_args(settings=SETTINGS)

# %% [markdown]
# ## 2. Reading the CSVs
#
# **`core/data.py`**: Kaggle's two CSVs: pandas parses them as uint8, refusing any other value.

# %%
from dataclasses import dataclass

import numpy as np

TEST_COLUMNS = [f"pixel{i}" for i in range(784)]
TRAIN_COLUMNS = ["label", *TEST_COLUMNS]

@dataclass
class DigitData:
    """Kaggle's two tables: labelled training images and unlabelled test images, as uint8."""
    source: str
    train_images: np.ndarray  # (n, 784) uint8
    train_labels: np.ndarray  # (n,) uint8
    test_images: np.ndarray   # (m, 784) uint8

def load_folder(folder: Path) -> DigitData:
    train = read_csv(folder / "train.csv", TRAIN_COLUMNS)
    test = read_csv(folder / "test.csv", TEST_COLUMNS)
    return DigitData(str(folder), np.ascontiguousarray(train[:, 1:]), train[:, 0].copy(), test)

def read_csv(path: Path, columns: list[str]) -> np.ndarray:
    """The rows of a CSV whose header is exactly `columns`, as a uint8 array."""
    import pandas as pd  # here, not at the top: the local CLI imports this module for much less
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        table = pd.read_csv(path, skiprows=1, header=None, dtype=np.uint8, engine="c", na_filter=False)
    except (OSError, ValueError, OverflowError) as exc:  # pandas' ParserError is a ValueError
        reason = " ".join(str(exc).split())  # pandas' own words, on one line
        raise UserError(f"{path}: not a Kaggle digit CSV with rows of integers 0-255 ({reason})") from None
    if header != columns or table.shape[1] != len(columns):
        raise UserError(f"{path}: expected exactly the columns {columns[0]},...,{columns[-1]}, in that order")
    if columns[0] == "label" and table[0].max() > 9:
        raise UserError(f"{path}: a label above 9; expected the digits 0-9")
    return np.ascontiguousarray(table.to_numpy())

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
# **`core/features.py`**: What the one linear layer sees: a ladder of fixed features, computed per image.
#
# An image's features are the same alone or in any batch. On the sample, 5-fold CV at each rung's L2
# optimum (README): pixels 0.896, deskew 0.940, normalised 0.950, orientations 0.982.
#
# - `pixels`: the raw 784 pixels as ink in [0, 1], what the tutorials feed it;
# - `deskew`: each digit sheared upright by its second moments and centred (the cell above);
# - `normalised`: the same resampling also scales the ink's vertical standard deviation to 5.55 px,
#   then a Gaussian blur (sigma 1 px), so a stroke a pixel off still overlaps the template it matches;
# - `orientations` (the default): the normalised pixels plus 8 x 7 x 7 direction planes: each pixel's
#   Sobel gradient magnitude on the upright, unblurred image, shared between the two nearest of 8
#   directions, each plane pooled by a Gaussian (sigma 2 px) every 4 px. A linear model cannot compute
#   "a horizontal edge near here" from pixels; handed it, it tells strokes apart by direction.

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
CHUNK = 2048  # images at a time: the intermediates stay small and cache-warm

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
    """The matrix (out, size) of a 1-D correlation with `kernel`, zero-padded, every `stride`-th output: a
    separable 2-D filter is then two small matmuls, many times faster on the CPU than conv2d on 28x28."""
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
# **`core/model.py`**: Multinomial logistic regression: one linear layer on standardised image features.
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
    """Logits W (x - mean) / std + b. The rung, mean and scales are part of the model, so a saved model
    predicts raw Kaggle pixels exactly as it did in training."""

    def __init__(self, features: str = DEFAULT_RUNG):
        super().__init__()
        self.features = features
        n_features = feature_count(features)
        self.linear = nn.Linear(n_features, N_CLASSES)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def features_of(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.standardised(image_features(pixels, self.features))

    def standardised(self, prepared: torch.Tensor) -> torch.Tensor:  # in place: prepared is always fresh
        return prepared.sub_(self.mean).div_(self.std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features_of(pixels))

def standardiser(prepared: torch.Tensor, features: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's mean over these training rows, and each block's one scale about those means."""
    mean, std = prepared.mean(0), torch.empty(prepared.shape[1], device=prepared.device)
    for block in feature_blocks(features):
        # sqrt(E[x^2] - mean(mean^2)): the block's std about its own features' means, without a copy.
        mean_square = torch.linalg.vector_norm(prepared[:, block]).square() / prepared[:, block].numel()
        std[block] = (mean_square - mean[block].square().mean()).clamp_min(1e-12).sqrt()
    return mean, std

def save_model(model: SoftmaxRegression, path: Path, extra: dict) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # written by Python, so that a full disk is an OSError, not torch's RuntimeError
    torch.save({"format": MODEL_FORMAT, "features": model.features, "state_dict": state, **extra}, buffer)
    Path(path).write_bytes(buffer.getvalue())

# %% [markdown]
# ## 5. Training
#
# **`core/split.py`**: A seeded hold-out split, stratified: each digit is held out in its own proportion.
#
# A skewed split would score a skewed mix of digits. (Config.check has asked whether the labels allow it.)

# %%
def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): each digit contributes round(val_fraction * its count) to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_val = int(round(val_fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))

# %% [markdown]
# **`core/train.py`**: Training: all of a run's models fitted at once, each fold standardised on its own rows.
#
# A hold-out split is one fold; K-fold CV (section 8) is K of them, with one model per L2 strength
# tried. By default each model is the optimum of its mean cross-entropy + weight_decay/2 |W|^2, found
# by L-BFGS (section 7): the loss is convex, so there is one optimum and nothing to stop early.
# `--optimizer adam` or `sgd` fits by epochs instead and keeps the hold-out's best epoch (section 10).

# %%
def by_optimum(cfg: Config) -> bool:
    return cfg.optimizer == "lbfgs" or cfg.weight_decay == "auto"

class Folds:
    """Each fold's training and validation rows of the prepared images, padded to one length so that the
    folds stack into one batched tensor (the masks mark a fold's own rows), and its standardiser; once
    fitted, the weights (folds, d, strengths * 10: a 10-column block per L2 strength), the bias (folds, 1,
    strengths * 10), the history and the best epoch (L-BFGS: its iterations)."""

    def __init__(self, cfg: Config, prepared: torch.Tensor, labels: torch.Tensor, splits: list):
        device, targets = prepared.device, labels.long()
        self.prepared, self.count, self.features = prepared, len(splits), cfg.features
        train = [to_device(rows, device) for rows, _ in splits]
        if not by_optimum(cfg):  # shuffled once: each minibatch is then a contiguous slice, a view
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
            train = [rows[torch.randperm(len(rows), device=device, generator=generator)] for rows in train]
        self.train, self.train_mask = padded(train)
        self.val, self.val_mask = padded([to_device(rows, device) for _, rows in splits])
        self.train_features, self.train_targets = prepared[self.train], targets[self.train]  # (folds, n, d)
        self.val_features, self.val_targets = prepared[self.val], targets[self.val]
        own = [self.train_features[f, :len(rows)] for f, rows in enumerate(train)]
        self.mean, self.std = (torch.stack(s) for s in zip(*(standardiser(x, cfg.features) for x in own)))

    @torch.no_grad()
    def model(self) -> SoftmaxRegression:
        """The first fold's (the hold-out's) one model."""
        model = SoftmaxRegression(self.features).to(self.prepared.device)
        model.load_state_dict({"mean": self.mean[0], "std": self.std[0], "linear.weight": self.weight[0].T,
                               "linear.bias": self.bias[0, 0]})
        return model.eval()

def padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index rows of one length (each padded with its own first entries), and which entries are its own."""
    length, device = max(map(len, rows)), rows[0].device
    own = torch.arange(length, device=device) < torch.tensor([[len(r)] for r in rows], device=device)
    return torch.stack([torch.cat([r, r[:length - len(r)]]) for r in rows]), own

def fit(cfg: Config, prepared: torch.Tensor, labels: torch.Tensor, splits: list[tuple[np.ndarray, ...]],
        decays: list[float] | None = None, epochs: int | None = None, desc: str = "train") -> Folds:
    """Fit one model per (train, validation) split and L2 strength, all at once, on prepared features."""
    folds, decays = Folds(cfg, prepared, labels, splits), decays or [float(cfg.weight_decay)]
    fitted = fit_to_optimum(folds, decays, desc) if by_optimum(cfg) else \
        fit_epochs(cfg, folds, decays, epochs or cfg.epochs, desc)
    folds.weight, folds.bias, folds.history, folds.best_epoch = fitted
    return folds

@torch.no_grad()
def predict(model: SoftmaxRegression, pixels: torch.Tensor) -> torch.Tensor:
    """Class probabilities (n, 10) for uint8 pixels (n, 784), in chunks: 0.8 s, not 1.0, for 28,000 images."""
    return torch.cat([model.eval()(part).softmax(1) for part in pixels.split(16384)])

def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)

# %% [markdown]
# ## 6. Prediction and submission.csv
#
# **`core/submission.py`**: Kaggle's format: `ImageId,Label`, ImageId 1..N in test order, Label 0-9.

# %%
HEADER = "ImageId,Label"

def write_submission(path: Path, labels: np.ndarray) -> None:
    rows = "".join(f"{i},{label}\n" for i, label in enumerate(labels.tolist(), 1))
    atomic_write(path, lambda temp: temp.write_text(f"{HEADER}\n{rows}", encoding="utf-8"))

# %% [markdown]
# **`core/pipeline.py`**: One training run from data to outputs: split, fit, validate, predict, write.

# %%
import json
import platform
import time
from dataclasses import asdict

def run_training(cfg: Config, data: DigitData, out_dir: Path, timings: dict | None = None) -> dict:
    """Train, validate, write submission.csv, model.pt, the pictures and (last) metrics.json; the metrics."""
    check_config(cfg, data.train_labels)  # the split or folds it asks for can be made from these labels
    timings = dict(timings or {})  # the caller's own, e.g. import and load seconds
    clock = time.perf_counter()
    device = resolve_device(cfg.device)
    pixels, labels = to_device(data.train_images, device), to_device(data.train_labels, device)
    test_pixels = to_device(data.test_images, device)
    timings["to_device"] = time.perf_counter() - clock

    trained = (cross_validate if cfg.folds else held_out)(cfg, pixels, labels, timings)
    model, val_idx, val_probabilities = (trained.pop(k) for k in ("model", "val_idx", "val_probabilities"))
    clock = time.perf_counter()
    test_labels = predict(model, test_pixels).argmax(1).cpu().numpy()
    timings["predict"] = time.perf_counter() - clock
    scores = validation_scores(data.train_labels[val_idx], val_probabilities)
    metrics = {"data": data.source, **trained, **scores,
               "config": asdict(cfg), "device": describe_device(device), "torch_version": torch.__version__,
               "python_version": platform.python_version(), "timings_seconds": timings}
    metrics["examples"]["test"] = len(test_labels)
    clock = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_submission(out_dir / "submission.csv", test_labels)
    # "data": what `predict` defaults to, so a model trained on real data never predicts the sample unasked.
    extra = {"config": metrics["config"], "val_accuracy": metrics["val_accuracy"], "data": metrics["data"]}
    atomic_write(out_dir / "model.pt", lambda temp: save_model(model, temp, extra))
    timings["write"] = time.perf_counter() - clock
    clock = time.perf_counter()
    metrics.update(write_run_pictures(out_dir, model, data.train_images[val_idx], data.train_labels[val_idx],
                                      val_probabilities, metrics["confusion_matrix"], metrics["history"],
                                      metrics.get("cv")))
    timings["pictures"] = time.perf_counter() - clock
    atomic_write(out_dir / "metrics.json", lambda temp: temp.write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics

def held_out(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor, timings: dict) -> dict:
    """One stratified hold-out split: the model fitted on the rest, or refitted on all of train.csv."""
    clock = time.perf_counter()
    train_idx, val_idx = stratified_split(labels.cpu().numpy(), cfg.val_fraction, cfg.seed)
    prepared = image_features(pixels, cfg.features)
    result = fit(cfg, prepared, labels, [(train_idx, val_idx)])
    timings["fit"] = time.perf_counter() - clock
    model, refit = result.model(), None
    with torch.no_grad():  # errors.png's, from the features made above rather than from the pixels again
        val_probabilities = model.linear(model.standardised(prepared[val_idx])).softmax(1)
    if cfg.refit:
        clock = time.perf_counter()
        everything = (np.arange(len(labels)), np.arange(0))
        model = fit(cfg, prepared, labels, [everything], epochs=result.best_epoch, desc="refit").model()
        timings["refit"] = time.perf_counter() - clock
        refit = {"epochs": "to the optimum (L-BFGS)" if by_optimum(cfg) else result.best_epoch,
                 "examples": len(labels)}
    return {"model": model, "val_idx": val_idx, "val_probabilities": val_probabilities,
            "examples": {"train": len(train_idx), "validation": len(val_idx)},
            "best_epoch": result.best_epoch, "refit": refit, "history": result.history}

# %% [markdown]
# **`core/main.py`**: The kernel's entry point: find the data, train, write the outputs, show the pictures.
#
# On Kaggle from /kaggle/input to /kaggle/working; elsewhere from --input to --output, where it replaces
# only the files it writes, each one whole.

# %%
def main(argv: list[str] | None = None, settings: dict | None = None) -> int:
    args = parse_kernel_args(argv, settings)
    try:
        cfg = config_from_args(args)
        start = time.perf_counter()
        found, out = locate_input(args.input), args.output or default_output()
        check_output(out)  # before minutes of training, not after them
        data = load_folder(found)
        print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
        metrics = run_training(cfg, data, out, {"load": time.perf_counter() - start})
        print(*report_lines(metrics, out, "output folder", time.perf_counter() - start), sep="\n")
        if "ipykernel" in sys.modules:  # in a notebook each picture appears under the cell that ran it, too
            from IPython.display import Image, display
            for name in metrics.get("pictures", []):
                display(Image(filename=str(out / name)))
        return 0
    except (UserError, OSError) as exc:
        if args.debug:
            raise
        print(f"{KERNEL_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{KERNEL_PROG}: interrupted; each output written so far is complete, the others are as they "
              f"were", file=sys.stderr)
        return 130

# %% [markdown]
# ## 7. L-BFGS
#
# **`core/lbfgs.py`**: Full-batch L-BFGS for many independent models at once, in plain tensor ops.
#
# Each (fold, strength) model keeps its own curvature history and step length, so batching them into
# one tensor program changes no model's iterates; a model whose gradient is small enough stops and
# is no longer computed, so the batch shrinks as the strong penalties converge first. (torch.optim's
# LBFGS is single-model and imports torch._dynamo, about a second.) Strengths compared at their
# optima, not after a fixed budget of epochs, are chosen by the data alone.

# %%
MEMORY = 10  # curvature pairs kept, as scikit-learn's lbfgs (scipy's default)
ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
MAX_HALVINGS = 30
# Stop when every model's largest gradient entry is this small: scikit-learn's lbfgs default, on the
# same mean-loss-plus-penalty scale, so both stop at the same distance from the optimum.
OPTIMUM_TOL = 1e-4
MAX_ITER = 1000  # scikit-learn's cap in benchmarks/compare.py; the sample needs about a hundred

def fit_to_optimum(folds, decays: list[float], desc: str) -> tuple:
    """Every fold x strength model to the optimum of its mean cross-entropy + decay/2 |W|^2 (W on the
    standardised features): weight (folds, d, s*10), bias (folds, 1, s*10), history, iterations."""
    features, targets, std, mean = folds.train_features, folds.train_targets, folds.std, folds.mean
    (n_folds, n, d), strengths, classes = features.shape, len(decays), N_CLASSES
    decay = torch.tensor(decays, dtype=features.dtype, device=features.device)
    share = folds.train_mask.to(features.dtype)  # (folds, n): each row's share of its fold's mean loss
    share = share / share.sum(1, keepdim=True)  # padding rows count zero

    def objective(x: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = torch.zeros(n_folds, strengths, dtype=x.dtype, device=x.device), torch.zeros_like(x)
        moving = active.view(n_folds, strengths).cpu()
        for f in range(n_folds):  # one fold's moving strengths at a time: converged models cost nothing
            cols = torch.nonzero(moving[f]).flatten().tolist()
            if cols:
                value[f, cols], grad[f][:, cols] = fold_objective(f, x[f][:, cols], decay[cols])
        return value, grad

    def fold_objective(f: int, part: torch.Tensor, decay: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Value and gradient for one fold's models part (d + 1, s, 10), written out: autograd's X^T G runs
        several times slower on the CPU for so few columns than (G^T X)^T."""
        s = part.shape[1]
        weight = part[:d].reshape(d, -1)
        scaled = weight / std[f][:, None]  # W (x - m) / std + b = x (W / std) + (b - m (W / std))
        logits = torch.addmm(part[d].reshape(-1) - mean[f] @ scaled, features[f], scaled).view(n, s, classes)
        log_p = logits.log_softmax(-1)
        picked = targets[f][:, None, None].expand(n, s, 1)
        value = -(share[f] @ log_p.gather(-1, picked)[..., 0]) + decay / 2 * part[:d].square().sum((0, 2))
        residual = log_p.exp_().scatter_add_(-1, picked, torch.full_like(picked, -1, dtype=log_p.dtype))
        # d(mean loss)/d(logits): softmax minus one-hot, each row weighted.
        residual = residual.mul_(share[f][:, None, None]).view(n, -1)
        bias_grad = residual.sum(0)
        scaled_grad = (residual.T @ features[f]).T - mean[f][:, None] * bias_grad
        weight_grad = (scaled_grad / std[f][:, None]).view(d, s, classes) + decay[:, None] * part[:d]
        return value, torch.cat([weight_grad, bias_grad.view(1, s, classes)])

    models = n_folds * strengths
    fitting = f"{models} models" if models > 1 else "the model"
    progress = Progress(desc, unit="it", every=3.0, intro=f"fitting {fitting} to the optimum by L-BFGS "
                        f"(stops when every gradient entry is at most {OPTIMUM_TOL:g})")
    history = []
    # One model's parameters: its d weight rows and its bias row (dim 1) by its 10 classes (dim 3).
    x = torch.zeros(n_folds, d + 1, strengths, classes, dtype=features.dtype, device=features.device)
    for iterations, largest, moving, x, value in minimise(objective, x, (1, 3), MAX_ITER, OPTIMUM_TOL):
        # How far the largest gradient entry still is from the tolerance: there is no known end.
        progress.update(f"L-BFGS iteration {iterations}", f"largest gradient {largest:.2e}" + (
            f", {moving} of {models} models still moving" if models > 1 else ""), last=not moving)
        weight, bias = x[:, :d].reshape(n_folds, d, -1), x[:, d:].reshape(n_folds, 1, -1)
        # A lone model records every iterate, a batch only its last: the line search only lowers each
        # objective, so nothing diverges and one record is enough.
        if folds.val.numel() and (models == 1 or not moving or iterations == MAX_ITER):
            history.append({"iteration": iterations, "train_loss": float(value.mean()),
                            **validation(folds, weight, bias)})
    progress.bar.close()
    return weight.contiguous(), bias.contiguous(), history, iterations

def minimise(objective, x: torch.Tensor, dims: tuple[int, ...], max_iter: int, tol: float):
    """Minimise every model's objective(x, active) -> (values, gradient) from x until each one's largest
    gradient entry is at most `tol`, yielding (iteration, largest entry, models moving, x, values) each
    iteration. `dims`: a model's parameter dimensions (others index models); objective may skip idle ones."""
    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dims, keepdim=True)

    def amax(a: torch.Tensor) -> torch.Tensor:
        return a.abs().amax(dims, keepdim=True)

    everyone = torch.ones_like(dot(x, x), dtype=torch.bool)
    value, grad = objective(x, everyone)
    value = value.view_as(everyone)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / y.s), oldest first
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
        yield iteration, largest, int(moving), x, value
        if not moving:
            break

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

# %% [markdown]
# ## 8. Cross-validation
#
# **`core/cv.py`**: K-fold cross-validation: K folds x each L2 strength tried, fitted at once (section 5).
#
# The mean of the folds' held-out accuracies ± its standard error is the CV estimate printed last: the
# public score should fall within about two standard errors of it. Fits by epochs never stop early (a
# held-out fold must not choose anything it then scores).

# %%
from dataclasses import replace

def cross_validate(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor, timings: dict) -> dict:
    """Fit cfg.folds folds x the strengths tried, choose the strength, and make one model from it."""
    clock = time.perf_counter()
    decays = list(WEIGHT_DECAY_GRID) if cfg.weight_decay == "auto" else [float(cfg.weight_decay)]
    prepared = image_features(pixels, cfg.features)
    splits = stratified_folds(labels.cpu().numpy(), cfg.folds, cfg.seed)
    folds, n = fit(cfg, prepared, labels, splits, decays, desc=f"{cfg.folds}-fold CV"), len(labels)
    logits, accuracy, _ = scores(folds, folds.weight, folds.bias)  # accuracy: (folds, strengths)
    mean, stderr = accuracy.mean(0), accuracy.std(0) / math.sqrt(cfg.folds)
    chosen = int(torch.argmax(mean))  # the first of equals: the grid runs from weak to strong
    # The model submitted: the fit on all the data at the chosen strength (what CV chose it for), not
    # an average of the fold models: one more model at 1/(folds x strengths) of the CV's cost; at the
    # optimum on the sample it scored 0.946 against the average's 0.944 (README).
    optimum = by_optimum(cfg)
    refit_cfg = replace(cfg, weight_decay=decays[chosen], optimizer="lbfgs" if optimum else cfg.optimizer)
    model = fit(refit_cfg, prepared, labels, [(np.arange(n), np.arange(0))], desc="refit").model()
    how = f"refit{' to the optimum' if optimum else ''} on all {n} training images at weight decay " \
          f"{decays[chosen]:g}"
    refit = {"epochs": "to the optimum (L-BFGS)" if optimum else cfg.epochs, "examples": n}
    timings["fit"] = time.perf_counter() - clock
    summary = {"folds": cfg.folds, "accuracy": float(mean[chosen]), "stderr": float(stderr[chosen]),
               "fold_accuracies": accuracy[:, chosen].tolist(), "weight_decay": decays[chosen], "model": how,
               "grid": [{"weight_decay": d, "accuracy": float(m), "stderr": float(s)}
                        for d, m, s in zip(decays, mean, stderr)]}
    # Each training image's probabilities from the one fold model that did not train on it.
    out_of_fold = torch.empty(n, N_CLASSES, device=pixels.device)
    out_of_fold[folds.val[folds.val_mask]] = logits[..., chosen, :].softmax(-1)[folds.val_mask]
    return {"model": model, "val_idx": np.arange(n), "val_probabilities": out_of_fold,
            "examples": {"train": n, "validation": n}, "best_epoch": folds.best_epoch, "refit": refit,
            "history": folds.history, "cv": summary}

def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) indices of each fold: each digit's examples, shuffled, dealt round the folds."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == digit)) for digit in range(10)])
    # One deal round the folds, digit after digit: the folds' sizes differ by at most one.
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[order] = np.arange(len(order)) % folds
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(folds)]

# %% [markdown]
# ## 9. Pictures
#
# **`core/pictures.py`**: The run's five PICTURES, each one titled_grid: title lines over named tiles
# (digits, confusion cells, charts). Drawn with Pillow: torchvision's import loads torch._dynamo (1 s).

# %%
from PIL import Image, ImageDraw, ImageFont

# Every picture a run writes, in the order written (tests and readers list them from here).
PICTURES = ("weights.png", "errors.png", "confusion.png", "learning_curve.png", "features.png")
ZOOM = 4  # nearest-neighbour upscaling: a 28-pixel digit becomes 112 pixels, big enough to read
GAP, CELL = 6, 60  # white around and between the tiles; a confusion cell, room for "100.0%"
ERROR_COUNT, ERROR_COLUMNS, FEATURE_DIGITS = 24, 8, 5
WHITE, INK, MUTED, BLUE, RED = (255, 255, 255), (20, 20, 20), (90, 90, 90), (33, 102, 172), (178, 24, 43)
try:  # Pillow's own font, scalable since Pillow 10.1; before it, one small bitmap size that refuses anchor=
    FONT, SMALL_FONT = ImageFont.load_default(size=16), ImageFont.load_default(size=13)
except TypeError:
    FONT = SMALL_FONT = ImageFont.load_default()

def write_run_pictures(out_dir: Path, model, val_pixels, val_labels, val_probabilities, confusion,
                       history: list[dict], cv: dict | None) -> dict:
    """Write PICTURES; a run is worth keeping without them, so a failure is a warning and "pictures_error"."""
    drawings = {"weights.png": lambda: draw_weights(model),
                "errors.png": lambda: draw_errors(val_pixels, val_labels, val_probabilities),
                "confusion.png": lambda: draw_confusion(confusion),
                "learning_curve.png": lambda: draw_learning_curve(history, cv),
                "features.png": lambda: draw_features(val_pixels[:FEATURE_DIGITS], model.features)}
    record = {"pictures": []}
    try:
        for name in PICTURES:
            atomic_write(out_dir / name, lambda temp: drawings[name]().save(temp, format="PNG"))
            record["pictures"].append(name)
    except Exception as exc:  # noqa: BLE001  (see the docstring)
        record["pictures_error"] = f"{type(exc).__name__}: {exc}"
        print(f"digit-recognizer: warning: could not draw the run's pictures ({record['pictures_error']}); "
              "the run itself is complete", file=sys.stderr)
    return record

def draw_weights(model):
    # Per unit of ink (W / std, one std for all pixels): rarely inked, barely trained border pixels stay
    # near zero. One colour scale for all ten, at the 99.5th percentile so a few pixels don't wash it out.
    weights = (model.linear.weight[:, :N_PIXELS] / model.std[:N_PIXELS]).detach().cpu()
    weights = (weights / weights.abs().quantile(0.995).clamp_min(1e-12)).clamp(-1, 1).view(10, SIDE, SIDE, 1)
    ends = torch.where(weights < 0, torch.tensor(BLUE), torch.tensor(RED)) / 255
    seen = {"pixels": "raw", "deskew": "deskewed"}.get(model.features, "normalised")
    title = [f"What the model learned: one template per digit, over the {seen} 28x28 image",
             "red: ink here is evidence for the digit   blue: evidence against   pale: little effect",
             f"(weights per unit of ink, on the {N_PIXELS} pixels of {model.linear.in_features} features)"]
    colours = torch.lerp(torch.ones(3), ends, weights.abs())  # white where a weight is zero
    return titled_grid(title, colours, [f"digit {d}" for d in range(10)], 5)

def draw_errors(pixels, labels, probabilities):
    confidence, predicted = torch.as_tensor(probabilities).detach().cpu().max(1)
    wrong = torch.nonzero(predicted != torch.as_tensor(labels)).flatten()
    chosen = wrong[confidence[wrong].argsort(descending=True, stable=True)][:ERROR_COUNT].tolist()
    paper = 1 - torch.as_tensor(pixels).view(-1, SIDE, SIDE)[chosen] / 255  # ink on paper, as written
    title = [f"The {len(chosen)} most confident of {len(wrong)} mistakes on {len(labels)} validation images",
             "label: true -> predicted (probability the model gave its prediction)"]
    names = [f"{labels[i]} -> {predicted[i]}  ({confidence[i]:.2f})" for i in chosen]
    return titled_grid(title, paper, names, ERROR_COLUMNS)

def draw_confusion(confusion):
    counts = np.asarray(confusion, dtype=np.int64)
    mistakes = torch.as_tensor(counts).float().fill_diagonal_(0)
    cells = torch.ones(11, 12, 3)  # white headers: the digits above and left, % correct at the right
    share = mistakes / mistakes.max().clamp_min(1) * 0.9  # the most common mistake deep red, none pale
    cells[1:, 1:-1] = torch.lerp(torch.full((3,), 0.97), torch.tensor(RED) / 255, share[..., None])
    cells[1 + torch.arange(10), 1 + torch.arange(10)] = 0.85  # right answers in grey
    names = ["", *map(str, range(10)), "correct"]
    for i, row in enumerate(counts):
        correct = f"{row[i] / row.sum():.1%}" if row.sum() else "-"
        names += [str(i), *[str(n) if n or i == j else "" for j, n in enumerate(row)], correct]
    title = [f"Validation confusion matrix: {counts.trace()} of {counts.sum()} images correct",
             "rows: true digit   columns: predicted digit   red: mistakes (darker = more)"]
    return titled_grid(title, cells.view(-1, 1, 1, 3), names, 12, zoom=CELL, names_on_tiles=True)

def draw_features(pixels, features: str):
    """Digits exactly as image_features feeds each rung (orientations: the normalised pixels, then planes)."""
    ladder = [image_features(torch.as_tensor(pixels), rung) for rung in ("pixels", "deskew", "orientations")]
    squares = torch.stack([rung[:, :N_PIXELS] for rung in ladder], 1).view(-1, 3, SIDE, SIDE).clamp(0, 1)
    planes = ladder[-1][:, N_PIXELS:].view(-1, DIRECTIONS, POOLED, POOLED)
    planes = planes.repeat_interleave(SIDE // POOLED, -2).repeat_interleave(SIDE // POOLED, -1)
    planes = planes / planes.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]  # each digit's scale
    paper = 1 - torch.cat([squares, planes], dim=1).flatten(0, 1)  # dark ink (or energy) on white
    columns = ["raw", "deskewed", "normalised"] + [f"{360 // DIRECTIONS * k} deg" for k in range(DIRECTIONS)]
    title = ["What the linear layer sees: a few digits through each rung of the feature ladder",
             "raw pixels; deskewed; normalised (deskewed, scaled to one height, blurred); then the",
             "gradient energy each way (0 deg: more ink to the right, 90 deg: below), pooled every 4 px",
             f"this run's model was fed: {features}"]
    return titled_grid(title, paper, columns + [""] * (len(paper) - len(columns)), len(columns))

def draw_learning_curve(history: list[dict], cv: dict | None):
    grid = (cv or {}).get("grid", [])
    if len(grid) > 1:
        accuracy, stderr = np.array([[row["accuracy"], row["stderr"]] for row in grid]).T
        panels = {"": {"CV accuracy": accuracy, "- 1 SE": accuracy - stderr, "+ 1 SE": accuracy + stderr}}
        ticks = [f"{row['weight_decay']:g}" for row in grid]
        title = [f"Learning curve: {cv['folds']}-fold CV accuracy against the weight decay (L2 strength)",
                 f"each strength fitted to its optimum; chosen: {cv['weight_decay']:g}"]
    else:
        step = "epoch" if "epoch" in history[0] else "iteration"  # L-BFGS records its iterations
        ticks = [str(record[step]) for record in history]
        panels = {what: {key.replace("_", " "): [r[key] for r in history]
                         for key in history[0] if what in key} for what in ("loss", "accuracy")}
        title = [f"Learning curve: training and validation loss and accuracy per {step}",
                 "train: over the epoch's batches   val: after the epoch" if step == "epoch" else
                 "L-BFGS; train: the penalised objective   val: the iterate's"]
    return titled_grid(title, torch.stack([plot(ticks, s) for s in panels.values()]), [*panels], 2, zoom=1)

def plot(ticks: list[str], series: dict[str, list[float]]) -> torch.Tensor:
    values = [v for ys in series.values() for v in ys if math.isfinite(v)]
    margin = (max(values) - min(values)) * 0.08 or 0.01
    low, high = min(values) - margin, max(values) + margin
    left, top, right, bottom = 64, 34, 424, 254  # the frame of the plot in a 440 x 276 tile, one y scale
    scale = (bottom - top) / (high - low)  # pixels a unit of y
    x = np.linspace(left, right, len(ticks)) if len(ticks) > 1 else [(left + right) / 2]  # one point: centred
    chart = Image.new("RGB", (440, 276), WHITE)
    draw = ImageDraw.Draw(chart)
    draw.rectangle([left, top, right, bottom], outline=MUTED)
    for value in np.linspace(low, high, 5):  # the y scale
        draw_centred(draw, (left - 30, bottom - (value - low) * scale), f"{value:.3f}", SMALL_FONT, MUTED)
    for i in range(0, len(ticks), -(-len(ticks) // 10)):  # at most ten x labels
        draw_centred(draw, (x[i], bottom + 12), ticks[i], SMALL_FONT, MUTED)
    for n, (name, ys) in enumerate(series.items()):
        ink = RED if name.startswith("val") or n > 0 else BLUE  # validation always red
        points = [(x[i], bottom - (v - low) * scale) for i, v in enumerate(ys) if math.isfinite(v)]
        draw.line(points, fill=ink, width=2 if n < 2 else 1)
        for px, py in points:  # a dot at each, so that even a single point shows
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=ink)
        draw.text((left + 8 + 150 * n, 10), name, font=SMALL_FONT, fill=ink)
    return torch.from_numpy(np.array(chart)) / 255

def titled_grid(title: list[str], tiles: torch.Tensor, names: list[str], columns: int, zoom: int = ZOOM,
                names_on_tiles: bool = False):
    """Title lines over (n, h, w) greys or (n, h, w, 3) colours in [0, 1], enlarged `zoom` times, in
    rows of `columns`, each named above it (or on it: white on a dark tile); all of it centred."""
    tiles = (tiles.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    height, width = tiles.shape[1] * zoom, tiles.shape[2] * zoom
    line = FONT.getbbox("Ag")[3] + 6  # one line of text
    band = 0 if names_on_tiles else line + 4
    columns = max(min(columns, len(tiles)), 1)
    grid_width, top = GAP + columns * (width + GAP), 12 + len(title) * line + GAP
    canvas_width = max([grid_width] + [FONT.getbbox(text)[2] + 24 for text in title])
    canvas = Image.new("RGB", (canvas_width, top + -(-len(tiles) // columns) * (height + band + GAP)), WHITE)
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(title):
        draw_centred(draw, (canvas_width / 2, 12 + (k + 0.5) * line), text, FONT, INK if k == 0 else MUTED)
    for k, (tile, name) in enumerate(zip(tiles, names)):
        x = (canvas_width - grid_width) // 2 + GAP + k % columns * (width + GAP)
        y = top + k // columns * (height + band + GAP)
        canvas.paste(Image.fromarray(tile).resize((width, height), Image.NEAREST), (x, y + band))
        ink = WHITE if names_on_tiles and tile.mean() < 128 else INK
        draw_centred(draw, (x + width / 2, y + (height / 2 if names_on_tiles else band / 2)), name, FONT, ink)
    return canvas

def draw_centred(draw, centre: tuple[float, float], text: str, font, fill) -> None:
    left, top, right, bottom = font.getbbox(text)
    draw.text((centre[0] - (left + right) / 2, centre[1] - (top + bottom) / 2), text, font=font, fill=fill)

# %% [markdown]
# ## 10. Helpers
#
# **`core/optimizer.py`**: Epochs of Adam or SGD (`--optimizer adam`, `sgd`); every fit's scores and progress.
#
# The hold-out keeps its best epoch and stops once `patience` epochs bring nothing better, as big data
# peaks within a few epochs (CV folds run every epoch). The updates are written out, as torch.optim
# imports torch._dynamo on its first step (about a second, more than a fit on the sample); they are
# torch's single-tensor Adam and Nesterov SGD, step for step, one weight decay per strength.

# %%
from tqdm import tqdm  # a bar only in a terminal, where tqdm.auto is this one

BETAS, EPS, MOMENTUM = (0.9, 0.999), 1e-8, 0.9  # torch's Adam defaults; the usual SGD momentum

class Optimizer:
    """Adam, or Nesterov SGD, on [weight, bias] from their .grad; L2 `decay` (broadcast over the weight)
    on the weight only, as a penalised bias would shift the class priors."""

    def __init__(self, name: str, weight: torch.Tensor, bias: torch.Tensor, decay):
        self.name, self.params, self.steps = name, [weight, bias], 0
        self.decays = [torch.as_tensor(decay, device=weight.device), torch.zeros((), device=bias.device)]
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.steps += 1
        (beta1, beta2), step = BETAS, float(self.steps)
        for param, decay, (mean, square) in zip(self.params, self.decays, self.state):
            grad, param.grad = param.grad.addcmul(param, decay), None
            if self.name == "sgd":  # `mean` is the velocity; from zero, its first step is the gradient
                mean.mul_(MOMENTUM).add_(grad)
                param.add_(grad.add(mean, alpha=MOMENTUM), alpha=-lr)
                continue
            mean.lerp_(grad, 1 - beta1)
            square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (square.sqrt() / (1 - beta2**step) ** 0.5).add_(EPS)
            param.addcdiv_(mean, denom, value=-lr / (1 - beta1**step))

def fit_epochs(cfg: Config, folds, decays: list[float], epochs: int, desc: str) -> tuple:
    """Every fold x strength model, for `epochs` epochs or (the hold-out) until early stopping; returns
    weight, bias, the history and the best epoch."""
    device, (count, n), d = folds.prepared.device, folds.train.shape, folds.prepared.shape[1]
    weight = torch.zeros(count, d, len(decays) * N_CLASSES, device=device, requires_grad=True)
    bias = torch.zeros(count, 1, len(decays) * N_CLASSES, device=device, requires_grad=True)
    decay = torch.tensor(decays, device=device).repeat_interleave(N_CLASSES)  # one strength per 10 columns
    optimizer = Optimizer(cfg.optimizer, weight, bias, decay)
    size = cfg.batch_size_for(n)
    slices = [slice(s, min(s + size, n)) for s in range(0, n, size)]
    order = torch.Generator().manual_seed(cfg.seed)  # on the host: the order is a Python list
    targets = folds.train_targets[..., None].expand(-1, -1, len(decays))  # (folds, n, strengths)
    lone = count == 1 and folds.val.numel() > 0  # the hold-out: early stopping, the best epoch kept
    history, best_accuracy, best_epoch, best = [], -1.0, 0, None
    progress = Progress(desc, epochs)
    for epoch in range(1, epochs + 1):
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        batches = [slices[i] for i in torch.randperm(len(slices), generator=order).tolist()]
        for step, batch in enumerate(batches):
            logits = standardised_logits(folds, folds.train_features[:, batch], weight, bias)
            logits = logits.view(*targets[:, batch].shape, N_CLASSES)
            # Summed over the examples and divided by the batch size: each model's gradient is that of
            # its own mean loss.
            loss = F.cross_entropy(logits.reshape(-1, N_CLASSES), targets[:, batch].reshape(-1),
                                   reduction="sum") / (batch.stop - batch.start)
            loss.backward()
            optimizer.step(learning_rate(cfg, (epoch - 1 + step / len(batches)) / epochs))
            loss_sum += loss.detach() * (batch.stop - batch.start)
            correct += (logits.detach().argmax(-1) == targets[:, batch]).sum()  # as the weights were then
        record = {"epoch": epoch, "train_loss": float(loss_sum / targets.numel()),
                  "train_accuracy": float(correct / targets.numel())}
        if folds.val.numel():
            record.update(validation(folds, weight, bias))
        broken = [k.replace("_", " ") for k, v in record.items() if not math.isfinite(v)]  # the losses
        if not bool(torch.isfinite(weight).all() & torch.isfinite(bias).all()):
            broken.append("weights")
        if broken:  # such weights would predict nothing useful and must not be published
            progress.bar.close()
            raise UserError(f"--lr {cfg.lr:g}: training diverged in epoch {epoch} ({', '.join(broken)} not "
                            f"finite); try a smaller --lr (the default is {Config.lr}) or a smaller "
                            f"--weight-decay")
        history.append(record)
        values = [f"{k.replace('_', ' ')} {v:.4f}" for k, v in record.items() if k != "epoch"]
        progress.update(f"epoch {epoch}/{epochs}", ", ".join(values))
        if lone and record["val_accuracy"] > best_accuracy:
            # A copy on the host: the best weights survive later epochs, at 31 KB per improvement.
            best_accuracy, best_epoch = record["val_accuracy"], epoch
            best = [p.detach().to("cpu", copy=True) for p in (weight, bias)]
        elif lone and cfg.patience and epoch - best_epoch >= cfg.patience:
            break
    progress.bar.close()
    weight, bias = (p.to(device) for p in best) if best else (weight.detach(), bias.detach())
    return weight, bias, history, best_epoch if lone else epochs

def learning_rate(cfg: Config, progress: float) -> float:
    """Cosine decay from the peak at progress 0 to zero at progress 1 (the end of the run), or constant."""
    return cfg.lr * (0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1.0)

def standardised_logits(folds, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """W (x - m) / s + b for each fold's rows (folds, b, d) and weights (folds, d, k), as (W / s) x + (b -
    (W / s) m): the standardiser is folded into the weights, and the rows are never rewritten."""
    scaled = weight / folds.std[..., None]
    return torch.baddbmm(bias - torch.bmm(folds.mean[:, None, :], scaled), rows, scaled)

@torch.no_grad()
def scores(folds, weight: torch.Tensor, bias: torch.Tensor) -> tuple:
    """The held-out rows' logits (folds, v, strengths, 10), and their accuracy and loss (folds, strengths)."""
    logits = standardised_logits(folds, folds.val_features, weight, bias)
    logits = logits.view(*folds.val.shape, -1, N_CLASSES)
    targets, own = folds.val_targets[..., None].expand(logits.shape[:3]), folds.val_mask[..., None]
    size = folds.val_mask.sum(1, keepdim=True)
    correct = ((logits.argmax(-1) == targets) & own).sum(1)
    losses = F.cross_entropy(logits.permute(0, 3, 1, 2), targets, reduction="none") * own
    # In float64: a fold's accuracy is then exactly its count over its size, as the report prints it.
    return logits, correct.double() / size, losses.sum(1) / size

def validation(folds, weight: torch.Tensor, bias: torch.Tensor) -> dict:
    """The validation loss and accuracy, over the folds, of the strength with the best mean accuracy."""
    accuracy, loss = (score.mean(0) for score in scores(folds, weight, bias)[1:])
    best = int(accuracy.argmax())
    return {"val_loss": float(loss[best]), "val_accuracy": float(accuracy[best])}

class Progress:
    """A tqdm bar in a terminal; in a log (CI, a pipe, Kaggle's), plain lines, at most one per `every`
    seconds, as a log keeps every redraw of a bar. TQDM_DISABLE=1 (tqdm's own switch) silences both."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "epoch", every: float = 0.0,
                 intro: str | None = None):
        self.desc, self.every, self.printed = desc, every, time.perf_counter()
        self.quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                        disable=self.quiet or not sys.stderr.isatty())
        if self.bar.disable and not self.quiet and intro:
            print(f"{desc}: {intro}", flush=True)

    def update(self, step: str, status: str, last: bool = False) -> None:
        if not self.bar.disable:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update()
        elif not self.quiet and (last or time.perf_counter() - self.printed >= self.every):
            self.printed = time.perf_counter()
            print(f"{self.desc} {step}: {status}", flush=True)

# %% [markdown]
# **`core/device.py`**: Where a run trains: CUDA when a GPU is attached and works, else the CPU, and how that
# is described.

# %%
def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here (no GPU, or a CPU-only torch); "
                        "use --device cpu or auto")
    if name == "auto" and torch.cuda.is_available():
        try:  # whether the GPU takes work: a broken driver must not cost a Kaggle run its submission
            torch.zeros(1, device="cuda").add_(1).item()
            name = "cuda"
        except Exception as exc:  # noqa: BLE001  (RuntimeError, or AssertionError from a CPU-only build)
            print(f"warning: a GPU is attached but CUDA failed to start ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); training on the CPU", file=sys.stderr)
    return torch.device("cpu" if name == "auto" else name)

def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"

# %% [markdown]
# **`core/paths.py`**: Where the data is (below --input, default /kaggle/input) and where the outputs go.
#
# The output folder is checked before minutes of training, not after them.

# %%
import tempfile

def locate_input(given: Path | None) -> Path:
    """The shallowest folder in --input (default /kaggle/input) holding both train.csv and test.csv."""
    root = given or KAGGLE_INPUT
    for train in sorted(root.rglob("train.csv"), key=lambda train: (len(train.parts), train)):
        if (train.parent / "test.csv").is_file():
            return train.parent
    looked = "no such folder" if given and not given.is_dir() else "looked in it and every folder below it"
    raise UserError(f"{root}: {looked}; expected a folder holding both train.csv and test.csv: attach the "
                    f"competition's data on Kaggle (Add Input), elsewhere pass --input with that folder")

def default_output() -> Path:
    """Kaggle offers the files in /kaggle/working for submission; elsewhere a folder under the current one."""
    on_kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_WORKING.is_dir()
    return KAGGLE_WORKING if on_kaggle else Path("output")

def check_output(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # an unnamed file where the OS can: it leaves no trace
    except OSError as exc:
        doing = "write the outputs there" if folder.is_dir() else "create it"
        raise UserError(f"{folder}: cannot {doing} ({os_reason(exc)}); --output takes the folder the outputs "
                        f"go in") from None

# %% [markdown]
# **`core/checks.py`**: Refusing, in one line, the options no run could use, before training, not after;
# and naming the flags a run ignores (`--epochs 20` under L-BFGS), never silently dropping them.
#
# `train`, `kernels push` and the kernel all ask here, so one input is refused or taken by all alike.

# %%
from collections import Counter

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
    if train_labels is None:
        return
    per_digit = Counter(train_labels.tolist())
    counts = [per_digit[digit] for digit in range(10)]  # examples of each digit
    if cfg.folds:
        digit = counts.index(min(counts))  # the rarest (the first of equals)
        if counts[digit] < cfg.folds:
            raise UserError(f"--folds {cfg.folds}: digit {digit} has only {counts[digit]} examples in "
                            f"train.csv, so some fold would hold none; use fewer folds or a larger train.csv")
        return
    for digit, count in enumerate(counts):  # the stratified hold-out split of core/split.py
        n_val = round(cfg.val_fraction * count)
        if n_val in (0, count):
            side = "validation" if n_val == 0 else "training"
            raise UserError(f"--val-fraction {cfg.val_fraction} leaves digit {digit} ({count} examples in "
                            f"train.csv) with no {side} example; use a larger train.csv or another fraction")

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

# Which fields a config does not use: (when, those fields, why). The notice, `runs` and the submit message
# read it, so an ignored setting is never shown as used; a new field or mode adds its row here.
NOT_APPLYING = (
    (lambda c: bool(c.folds), ("val_fraction", "patience"),
     "with --folds every training image is validated once, by the folds, and each fold fit runs every epoch"),
    (lambda c: bool(c.folds), ("refit",), "with --folds the model submitted is always the refit on all of "
     "train.csv at the strength CV chose"),
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
# **`core/report.py`**: Scores, and the run summary that `digit-recognizer train` prints too, key lines last.

# %%
def validation_scores(truth: np.ndarray, probabilities) -> dict:
    """metrics.json's accuracy, loss, per-class accuracy and confusion matrix of held-out probabilities."""
    predicted = probabilities.argmax(1).cpu().numpy()
    # Rows are true digits, columns predicted digits.
    confusion = np.bincount(truth.astype(np.int64) * 10 + predicted, minlength=100).reshape(10, 10)
    totals = confusion.sum(1)  # a digit with no validation image has no accuracy: nan
    per_class = np.divide(confusion.diagonal(), totals, out=np.full(10, np.nan), where=totals > 0).tolist()
    loss = F.nll_loss(probabilities.cpu().clamp_min(1e-12).log(), torch.from_numpy(truth).long())
    return {"val_accuracy": float((predicted == truth).mean()), "val_loss": loss.item(),
            "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist()}

def report_lines(metrics: dict, folder: Path, folder_kind: str, total_seconds: float) -> list[str]:
    """The run's summary; `folder_kind` is "run folder" locally, "output folder" in the kernel."""
    cv, config = metrics.get("cv"), metrics["config"]
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in metrics["timings_seconds"].items())
    if cv:
        fitted = f"{cv['folds']}-fold CV"
    elif config.get("optimizer") == "lbfgs":
        fitted = f"fitted to the optimum by L-BFGS in {metrics['best_epoch']} iterations"
    else:  # the best epoch, and whether early stopping ended the run before its last epoch
        best, planned, ran = metrics["best_epoch"], config["epochs"], len(metrics.get("history") or [])
        fitted = f"best epoch {best} of {planned}"
        if 0 < ran < planned:
            fitted = (f"best epoch {best}; stopped early after epoch {ran} of {planned} ({ran - best} "
                      f"epoch{'s' if ran - best != 1 else ''} without a better validation accuracy, "
                      f"--patience {config['patience']})")
    lines = [f"device: {metrics['device']}; {fitted}",
             f"timings: {timings}; total {total_seconds:.2f}s",
             "validation confusion matrix (rows: true digit, columns: predicted) and per-class accuracy:",
             "true\\pred " + " ".join(f"{d:>5}" for d in range(10)) + f"{'acc':>8}"]
    for digit, (row, acc) in enumerate(zip(metrics["confusion_matrix"], metrics["per_class_accuracy"])):
        lines.append(f"{digit:>9} " + " ".join(f"{n:>5}" for n in row) + f"  {acc:6.1%}")
    if cv:  # no hold-out split to refit over: the CV says how its model was made
        lines.append(f"predictions from the {cv['model']}")
    elif metrics["refit"]:
        epochs = metrics["refit"]["epochs"]
        lines.append(f"predictions from a refit on train+validation ({metrics['refit']['examples']} images, "
                     f"{epochs if isinstance(epochs, str) else f'{epochs} epochs'})")
    lines.append(f"{folder_kind}: {folder}")
    if metrics.get("pictures"):
        lines.append(f"pictures: {', '.join(metrics['pictures'])} in the {folder_kind}")
    lines.append(f"submission: {folder / 'submission.csv'}")
    kind = "out-of-fold: each image validated by the fold fit that did not see it" if cv else "held out"
    lines.append(f"validation accuracy: {metrics['val_accuracy']:.4f} ({metrics['examples']['validation']} "
                 f"images, {kind})")
    if cv:  # the expected public score, last
        chosen = f", weight decay {cv['weight_decay']:g} chosen by it" if len(cv["grid"]) > 1 else ""
        lines.append(f"expected public score {cv['accuracy']:.3f} ± {cv['stderr']:.3f} ({cv['folds']}-fold "
                     f"CV){chosen}")
    return lines

# %% [markdown]
# **`core/fileio.py`**: Each output written whole (a temporary name, then a rename), or one line on why not.

# %%
from contextlib import suppress

def os_reason(exc: OSError) -> str:
    """'no space left on device', 'read-only file system', ... as a lower-case phrase."""
    return exc.strerror.lower() if exc.strerror else str(exc)

def atomic_write(path: Path, write) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write it ({os_reason(exc)}); nothing was written") from None
    finally:
        with suppress(OSError):  # nothing half-written is left, whatever happened
            temp.unlink(missing_ok=True)

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
