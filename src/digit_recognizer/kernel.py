# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Digit Recognizer: 99 % with one softmax layer
#
# Multinomial logistic regression (softmax regression) in PyTorch: one linear layer from fixed
# features of each image to the ten digit scores. Fed the raw pixels, as most logistic-regression
# notebooks do, it scores about 0.92 on the leaderboard. Fed what this notebook computes (each digit
# made upright, scaled to one height and blurred, plus the direction of its strokes, square-rooted)
# and fitted to the exact optimum of its penalised loss, the same one layer scores **0.990 on Kaggle's
# 28,000 test digits** (0.9903 with these features at this penalty's strength for 42,000 digits), in
# seconds on a CPU.
#
# The steps, each with what it shows:
#
# 1. **Settings**: every option, with its default.
# 2. **The data**: shapes, label counts, a grid of digits with their labels.
# 3. **Features**: a few digits through each rung of the feature ladder.
# 4. **The model**: the softmax, the cross-entropy and the L2 penalty.
# 5. **The fit**: L-BFGS to the optimum, its progress, then the learning curve.
# 6. **Validation**: accuracy, the confusion matrix, the most confident mistakes, what the model learned.
# 7. **Cross-validation**: the expected public score, when `folds` is set.
# 8. **Prediction**: `submission.csv`, its first rows.
# 9. **Running it on Kaggle and elsewhere**: what a run needs that a reader does not.
#
# To change a setting: *Copy & Edit*, change `SETTINGS` below, *Run All*. The outputs
# (`submission.csv`, `model.pt`, `metrics.json` and the pictures) go to `/kaggle/working`.

# %%
import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm

# %% [markdown]
# ## 1. Settings
#
# Every option of a run is a field of `Config`, with its default and what it does. On Kaggle, change
# one in the `SETTINGS` cell below (say `SETTINGS = dict(folds=5)`); run as a script, each is also a
# flag (`--folds 5`), and `digit-recognizer kernels push --folds 5` writes it into the settings of the
# copy it pushes. A value no run could use is refused at once, in one line that names the setting.

# %%
# The default L2 strength in scikit-learn's convention: weight decay 1 / (C n) for n images fitted. The
# mean-loss optimum shrinks roughly as 1 / n, so one C suits every size: C = 0.1 minimised the held-out
# loss at 1,000 to 3,600 sample digits and matches the best fixed strength at Kaggle's 33,600 (0.0003).
PENALTY_C = 0.1
# The strengths weight_decay="auto" compares by cross-validation, weakest penalty first, half a decade
# apart, C / 10 to C * 10 around the default: at Kaggle's size they reach from 3e-5 to 3e-3.
AUTO_C_GRID = (1.0, 0.32, 0.1, 0.032, 0.01)
# The feature ladder of section 3, from what most tutorials feed a linear model to the default.
FEATURE_RUNGS = ("pixels", "deskew", "normalised", "orientations", "sqrt-orientations")
MAX_FOLDS = 100
MAX_SEED = 2**64 - 1  # the largest seed numpy's generator takes
# Beyond this the penalty leaves every weight at zero: the model would only learn the digits' frequencies.
MAX_WEIGHT_DECAY = 1e4


class UserError(Exception):
    """A mistake the user can fix (a bad setting or file): shown as one line, without a traceback."""


class SettingError(UserError):
    """A setting no run could use: its name, then what is wrong ("folds must be ..., got 1"). The
    command line says the same with the flag's spelling (--folds)."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem


def option(default, about: str, choices: tuple | None = None):
    """A Config field: its default, what it does (its flag's --help) and the values it takes."""
    return field(default=default, metadata={"help": about, "choices": choices})


@dataclass(frozen=True)
class Config:
    """Every option of a run."""
    seed: int = option(0, "random seed for the hold-out split and the folds")
    val_fraction: float = option(0.1, "fraction of train.csv held out, stratified by digit, to validate on")
    weight_decay: float | str = option("scaled", "L2 penalty on the weights: 'scaled' = 1 / (C n) for the n images "
                                       f"fitted, C = {PENALTY_C} (scikit-learn's C, which suits any size); a number; "
                                       "or 'auto': the best C of " + ", ".join(map(str, AUTO_C_GRID)) +
                                       " by cross-validation (needs folds)")
    features: str = option("sqrt-orientations", "what the linear layer sees: raw pixels; deskewed; normalised "
                           "(deskewed, one height, blurred); orientations (normalised + 392 pooled "
                           "gradient-direction planes); sqrt-orientations (the same, each pooled plane cell "
                           "square-rooted)", FEATURE_RUNGS)
    refit: bool = option(False, "after validating, fit again on all of train.csv for the predictions "
                         "(with folds always done)")
    folds: int = option(0, "K >= 2: K-fold cross-validation, the expected public score +- its standard "
                        "error; 0: one hold-out split")
    device: str = option("auto", "where to train: auto picks CUDA when it works", ("auto", "cpu", "cuda"))

    def __post_init__(self):
        for name, accepted, expected in RULES:
            value = getattr(self, name)
            if not accepted(value):
                raise SettingError(name, f"must be {expected}, got {value!r}")
        if self.weight_decay == "auto" and not self.folds:
            raise SettingError("weight_decay", "'auto' chooses the penalty by cross-validation, so it needs "
                               "folds of 2 or more (e.g. 5)")

    @classmethod
    def from_settings(cls, settings: dict) -> "Config":
        """The config a SETTINGS dict makes; a name that is no setting is refused, naming the settings."""
        names = [f.name for f in fields(cls)]
        unknown = [name for name in settings if name not in names]
        if unknown:
            raise UserError(f"SETTINGS has no setting {unknown[0]!r}; the settings are {', '.join(names)}")
        return cls(**settings)


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Config's checks, in order: (setting, whether a value is accepted, what it must be). NaN fails each.
RULES = (
    ("seed", lambda v: is_integer(v) and 0 <= v <= MAX_SEED, "an integer from 0 to 2**64-1"),
    ("val_fraction", lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1 (exclusive)"),
    ("weight_decay", lambda v: v in ("scaled", "auto") or is_number(v) and 0 <= v <= MAX_WEIGHT_DECAY,
     f"'scaled', 'auto' or a number from 0 to {MAX_WEIGHT_DECAY:g} (beyond it every weight stays zero)"),
    ("features", lambda v: v in FEATURE_RUNGS, f"one of {', '.join(FEATURE_RUNGS)}"),
    ("refit", lambda v: isinstance(v, bool), "True or False"),
    ("folds", lambda v: is_integer(v) and (v == 0 or 2 <= v <= MAX_FOLDS),
     f"0 (one hold-out split) or an integer from 2 to {MAX_FOLDS}"),
    ("device", lambda v: v in ("auto", "cpu", "cuda"), "one of auto, cpu, cuda"),
)


def training_device(name: str) -> torch.device:
    """The device a run trains on: CUDA when asked for or (auto) when a GPU is attached and works."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingError("device", "cuda: CUDA is not available here (no GPU, or a CPU-only torch); use cpu or "
                           "auto")
    if name == "auto" and torch.cuda.is_available():
        try:  # whether the GPU takes work: a broken driver must not cost a Kaggle run its submission
            torch.zeros(1, device="cuda").add_(1).item()
            return torch.device("cuda")
        except Exception as exc:  # noqa: BLE001  (RuntimeError, or AssertionError from a CPU-only build)
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            print(f"warning: a GPU is attached but CUDA failed to start ({type(exc).__name__}: {first_line}); "
                  f"training on the CPU", file=sys.stderr)
    return torch.device("cpu" if name == "auto" else name)


# %% [markdown]
# The settings this run changes from the defaults above (`kernels push` writes its options here):

# %% tags=["parameters"]
SETTINGS = dict()

# %% tags=["active-ipynb"]
# config = Config.from_settings(SETTINGS)
# device = training_device(config.device)
# print(config)
# print(f"training on {device}")

# %% [markdown]
# ## 2. The data
#
# Kaggle's `train.csv` has a `label` column and 784 pixel columns (a 28x28 image, row by row, ink
# from 0 to 255); `test.csv` has the pixels only. Attached competition data appears below
# `/kaggle/input` (newer notebooks see it one folder deeper than older ones), so we look for the
# folder that holds both files. pandas reads each file straight into `uint8`, an eighth of the memory
# of its default `int64`, and anything that is not an integer from 0 to 255 is refused.

# %%
KAGGLE_INPUT = Path("/kaggle/input")
TEST_COLUMNS = [f"pixel{i}" for i in range(784)]
TRAIN_COLUMNS = ["label", *TEST_COLUMNS]
SIDE = 28  # pixels a side


@dataclass
class DigitData:
    """Kaggle's two tables: labelled training images and unlabelled test images, as uint8."""
    source: str
    train_images: np.ndarray  # (n, 784)
    train_labels: np.ndarray  # (n,)
    test_images: np.ndarray   # (m, 784)


def find_data(root: Path = KAGGLE_INPUT) -> Path:
    """The shallowest folder below `root` holding both train.csv and test.csv."""
    for train in sorted(root.rglob("train.csv"), key=lambda path: (len(path.parts), path)):
        if (train.parent / "test.csv").is_file():
            return train.parent
    looked = "no such folder" if not root.is_dir() else "looked in it and every folder below it"
    raise UserError(f"{root}: {looked}; expected a folder holding both train.csv and test.csv: attach the "
                    f"competition's data on Kaggle (Add Input), elsewhere pass --input with that folder")


def read_csv(path: Path, columns: list[str]) -> np.ndarray:
    """The rows of a CSV whose header is exactly `columns`, as a uint8 array."""
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


def load_data(folder: Path) -> DigitData:
    train = read_csv(folder / "train.csv", TRAIN_COLUMNS)
    test = read_csv(folder / "test.csv", TEST_COLUMNS)
    return DigitData(str(folder), np.ascontiguousarray(train[:, 1:]), train[:, 0].copy(), test)


def describe_data(data: DigitData) -> str:
    counts = np.bincount(data.train_labels, minlength=10)
    return "\n".join([
        f"data: {data.source}",
        f"train images {data.train_images.shape} {data.train_images.dtype}, labels {data.train_labels.shape}; "
        f"test images {data.test_images.shape}",
        "images per digit: " + ", ".join(f"{digit}: {count}" for digit, count in enumerate(counts))])


# %% [markdown]
# Every picture is drawn with matplotlib and kept as PNG bytes: the notebook shows it under the cell
# that made it, and the run writes the same bytes to a file in the output folder. A grid of digits is
# one image stitched from the tiles, as torchvision's `make_grid` does, with each tile's label written
# above it (torchvision itself is not imported: it takes seconds to load, longer than a fit on the
# sample, and its grid has no labels).

# %%
@dataclass(repr=False)
class Picture:
    name: str  # its file name in the output folder
    png: bytes
    figure: Figure  # what was drawn, for a closer look (its axes, lines and texts)

    def _repr_png_(self) -> bytes:  # what Jupyter shows for a cell whose value is a Picture
        return self.png

    def __repr__(self) -> str:  # the text form of the same output: not the bytes
        return f"<{self.name}: {len(self.png)} bytes of PNG>"


def picture(name: str, figure: Figure) -> Picture:
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return Picture(name, buffer.getvalue(), figure)


GRID_BAND, GRID_GAP = 6, 2  # canvas pixels: a title band above each row of tiles, a gap beside each tile


def image_grid(images, titles: list[str], columns: int, heading: str, cmap: str = "gray_r",
               scale: tuple[float, float] = (0.0, 1.0)) -> Figure:
    """Square images (n, h, w) in rows of `columns`, stitched into one image with each tile's title in a
    band above it. With the default colour map ink is dark on white paper, as the digits were written."""
    images = np.asarray(images, dtype=np.float32)
    count, height, width = images.shape
    rows, band, gap = -(-count // columns), GRID_BAND, GRID_GAP
    paper = scale[0] if cmap == "gray_r" else (scale[0] + scale[1]) / 2  # white in either colour map
    canvas = np.full((rows * (height + band), columns * (width + gap) + gap), paper, dtype=np.float32)
    for k, image in enumerate(images):
        top, left = k // columns * (height + band) + band, gap + k % columns * (width + gap)
        canvas[top:top + height, left:left + width] = image
    inch = 0.05  # per canvas pixel: a 28-pixel digit is 1.4 inches, 112 pixels at 80 dpi
    heading_inches = 0.2 * (heading.count("\n") + 1) + 0.15
    figure = Figure(figsize=(canvas.shape[1] * inch, canvas.shape[0] * inch + heading_inches))
    axes = figure.add_axes((0, 0, 1, canvas.shape[0] * inch / figure.get_figheight()))
    axes.imshow(canvas, cmap=cmap, vmin=scale[0], vmax=scale[1], interpolation="nearest")
    for k, title in enumerate(titles[:count]):
        axes.text(gap + k % columns * (width + gap) + width / 2, k // columns * (height + band) + band - 1,
                  title, ha="center", va="bottom", fontsize=7)
    axes.set_axis_off()
    figure.text(0.5, 1 - 0.08 / figure.get_figheight(), heading, ha="center", va="top", fontsize=9)
    return figure


def digits_picture(data: DigitData, count: int = 20) -> Picture:
    images = data.train_images[:count].reshape(-1, SIDE, SIDE) / 255
    titles = [f"label {label}" for label in data.train_labels[:count]]
    return picture("digits.png", image_grid(images, titles, 10, f"The first {count} digits of train.csv"))


# %% tags=["active-ipynb"]
# data = load_data(find_data())
# print(describe_data(data))
# digits_picture(data)

# %% [markdown]
# ## 3. Features: what the one linear layer sees
#
# A linear model scores each pixel on its own, so a slanted or off-centre 7 puts its ink where the
# template has none. Every step below is a fixed, per-image computation written as batched tensor
# operations (an image's features are the same alone or in any batch), and each rung of the ladder is
# worth its place: 5-fold cross-validation on a 4,000-digit sample of MNIST, each rung fitted to its
# optimum, gives pixels 0.897, deskew 0.940, normalised 0.950, orientations 0.982, sqrt-orientations 0.984.
#
# - **pixels**: the raw 784 pixels as ink in [0, 1], what most notebooks feed a linear model;
# - **deskew**: each digit sheared upright by its second moments and centred by its centre of mass
#   (LeCun et al. 1998: 12 % -> 8.4 % error for a linear classifier), in one batched `grid_sample`;
# - **normalised**: the same single resampling also scales each digit so that its ink's vertical
#   standard deviation is 5.55 px, then a Gaussian blur (sigma 1 px), so that a stroke a pixel off
#   still overlaps the template it matches;
# - **orientations**: the normalised pixels plus 8 x 7 x 7 direction planes. A linear model cannot
#   compute "a horizontal edge near here" from pixels; handed it, it tells strokes apart by direction.
#   Each pixel's Sobel gradient magnitude on the upright, unblurred image is shared between the two
#   nearest of 8 directions, and each plane is pooled by a Gaussian (sigma 2 px) every 4 px: 1,176
#   features in all;
# - **sqrt-orientations** (the default): the same, with the square root of each pooled cell (the map
#   that HOG and RootSIFT apply to histograms of gradients). A thick stroke's few large cells no longer
#   outweigh the many small ones that tell a 4 from a 9: +0.0028 ± 0.0013 of cross-validated accuracy on
#   the sample (paired folds), +0.0025 on Kaggle's 42,000 digits, 0.9903 on its test set.

# %%
SIZE = 5.55  # the normalised ink's vertical standard deviation, in pixels
BLUR_SIGMA = 1.0
DIRECTIONS = 8
POOL_SIGMA, POOL_STRIDE = 2.0, 4
POOL_TAPS = 12  # an even kernel centres each sample between pixels: 1.5, 5.5, ..., 25.5 in a 28-pixel frame
POOLED = (SIDE + 2 * 4 - POOL_TAPS) // POOL_STRIDE + 1  # 7 samples a side with 4 pixels of zero padding
N_PIXELS = SIDE * SIDE
CHUNK = 2048  # images at a time: the intermediates stay small and cache-warm


def upright(images: torch.Tensor, size: float | None = None) -> torch.Tensor:
    """Deskewed (and, with `size`, size-normalised) copies of float images (n, 1, 28, 28), ink in [0, 1]."""
    return F.grid_sample(images, upright_grid(images[:, 0], size), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def upright_grid(images: torch.Tensor, size: float | None = None) -> torch.Tensor:
    """Sampling grid (n, 28, 28, 2) in grid_sample's [-1, 1] units, from the images' moments.

    Output pixel (x, y), taken from the frame's centre c, reads input (cx + k (x + alpha y), cy + k y):
    alpha = cov(x, y) / var(y) removes the slant, the centre of mass moves to the middle, and the
    zoom k is 1, or sd(y) / size so that the ink's vertical spread becomes `size` pixels. The grid is
    built by broadcasting rather than affine_grid, whose batched tiny matmuls are slow on the CPU.
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


ORIENTATION_RUNGS = ("orientations", "sqrt-orientations")


def feature_count(rung: str) -> int:
    return N_PIXELS + (DIRECTIONS * POOLED * POOLED if rung in ORIENTATION_RUNGS else 0)


def feature_blocks(rung: str) -> list[slice]:
    """The feature blocks that share one scale each: the pixels, then the orientation planes."""
    return [slice(0, N_PIXELS)] + ([slice(N_PIXELS, feature_count(rung))] if rung in ORIENTATION_RUNGS else [])


def image_features(pixels: torch.Tensor, rung: str) -> torch.Tensor:
    """uint8 pixels (n, 784) -> float32 features (n, feature_count(rung)), computed chunk by chunk."""
    out = torch.empty(len(pixels), feature_count(rung), dtype=torch.float32, device=pixels.device)
    for start in range(0, len(pixels), CHUNK):
        ink = pixels[start:start + CHUNK].to(torch.float32).div_(255.0).view(-1, 1, SIDE, SIDE)
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
    planes = orientation_planes(normalised)
    if rung == "sqrt-orientations":  # the pooled cells are sums of magnitudes, so never below zero
        planes = planes.clamp_min_(0).sqrt_()
    return torch.cat([blurred, planes.flatten(1)], dim=1)


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


def features_picture(pixels: np.ndarray, rung: str) -> Picture:
    """A few digits exactly as image_features feeds each rung: raw, deskewed, then the normalised pixels and
    the planes of the run's orientation rung (the default's, for a run without planes)."""
    pixels = torch.as_tensor(pixels)
    shown = rung if rung in ORIENTATION_RUNGS else "sqrt-orientations"
    ladder = [image_features(pixels, name) for name in ("pixels", "deskew", shown)]
    squares = torch.stack([rung_features[:, :N_PIXELS] for rung_features in ladder], 1).view(-1, 3, SIDE, SIDE)
    planes = ladder[-1][:, N_PIXELS:].view(-1, DIRECTIONS, POOLED, POOLED)
    planes = planes.repeat_interleave(SIDE // POOLED, -2).repeat_interleave(SIDE // POOLED, -1)
    planes = planes / planes.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]  # each digit's scale
    tiles = torch.cat([squares.clamp(0, 1), planes], dim=1).flatten(0, 1)
    columns = ["raw", "deskewed", "normalised"] + [f"{360 // DIRECTIONS * k} deg" for k in range(DIRECTIONS)]
    root = "square root of the " if shown == "sqrt-orientations" else ""
    heading = (f"The feature ladder: raw, deskewed, normalised; then the {root}gradient energy each way\n"
               f"(0 deg: more ink to the right, 90 deg: below), pooled every 4 px. This run feeds: {rung}")
    titles = columns + [""] * (len(tiles) - len(columns))
    return picture("features.png", image_grid(tiles.numpy(), titles, len(columns), heading))


# %% tags=["active-ipynb"]
# ladder = features_picture(data.train_images[:5], config.features)
# ladder

# %% [markdown]
# ## 4. The model
#
# Each image's features $x$ (a row of 1,176 numbers) are standardised, $z = (x - \mu) / \sigma$, and one
# linear layer turns them into ten scores, whose softmax is the probability of each digit:
#
# $$p(y = k \mid x) = \frac{e^{s_k}}{\sum_{j=0}^{9} e^{s_j}}, \qquad s = W z + b .$$
#
# Training minimises the mean cross-entropy of the $n$ training images plus an L2 penalty on the
# weights (not the bias, which would shift the digits' prior frequencies), with strength $\lambda$,
# the `weight_decay` setting:
#
# $$L(W, b) = -\frac{1}{n} \sum_{i=1}^{n} \log p(y_i \mid x_i) + \frac{\lambda}{2} \lVert W \rVert^2 .$$
#
# $\mu$ is each feature's mean over the training images, and $\sigma$ one scale shared by each block of
# features (the pixels; the orientation planes): a scale per feature would blow up the border pixels
# that are almost never inked (0.930 against 0.939 validation accuracy). Both are part of the model,
# so a saved model predicts raw Kaggle pixels exactly as it did in training.
#
# The penalty that suits 4,000 digits is too strong for 42,000: the mean loss's optimum strength
# shrinks roughly as $1/n$. So by default $\lambda = 1 / (C n)$ with scikit-learn's $C = 0.1$, which
# stays put as the data grows: $\lambda$ is about 0.003 on the 3,600 digits a hold-out leaves of the
# sample and about 0.0003 on Kaggle's 37,800, each as good as the best fixed value tried at its size.

# %%
N_CLASSES = 10
MODEL_FORMAT = 2  # model.pt: 2 saves the feature rung; 1 (older runs) saved only whether it deskewed


class SoftmaxRegression(nn.Module):
    """Scores W (x - mean) / std + b; softmax(scores) is the probability of each digit."""

    def __init__(self, features: str = "sqrt-orientations"):
        super().__init__()
        self.features = features
        n_features = feature_count(features)
        self.linear = nn.Linear(n_features, N_CLASSES)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardised(image_features(pixels, self.features)))

    def standardised(self, prepared: torch.Tensor) -> torch.Tensor:  # in place: prepared is always fresh
        return prepared.sub_(self.mean).div_(self.std)


@dataclass(frozen=True)
class Penalty:
    """One L2 strength: a fixed weight decay, or scikit-learn's C, whose weight decay 1 / (C n) follows
    the number n of images fitted."""
    c: float | None = None
    fixed: float | None = None

    def weight_decay(self, n: int) -> float:
        return self.fixed if self.c is None else 1 / (self.c * n)

    def __str__(self) -> str:
        return f"C = {self.c:g}" if self.c is not None else f"weight decay {self.fixed:g}"


def penalties(config: Config) -> list[Penalty]:
    """The strengths a run fits: the grid of C for 'auto', else the one the setting names."""
    if config.weight_decay == "auto":
        return [Penalty(c=c) for c in AUTO_C_GRID]
    if config.weight_decay == "scaled":
        return [Penalty(c=PENALTY_C)]
    return [Penalty(fixed=float(config.weight_decay))]


def standardiser(prepared: torch.Tensor, rung: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's mean over these training rows, and each block's one scale about those means."""
    mean, std = prepared.mean(0), torch.empty(prepared.shape[1], device=prepared.device)
    for block in feature_blocks(rung):
        # sqrt(E[x^2] - mean(mean^2)): the block's std about its own features' means, without a copy.
        mean_square = torch.linalg.vector_norm(prepared[:, block]).square() / prepared[:, block].numel()
        std[block] = (mean_square - mean[block].square().mean()).clamp_min(1e-12).sqrt()
    return mean, std


# %% tags=["active-ipynb"]
# SoftmaxRegression(config.features)

# %% [markdown]
# ## 5. The fit
#
# ### Holding out a validation split
#
# Before fitting, a tenth of `train.csv` is held out to measure the model on digits it never saw. The
# split is stratified: each digit is held out in its own proportion, so the validation set is not a
# skewed mix of digits. With `folds`, the same idea is applied K times (section 7): each digit's images
# are shuffled and dealt round K folds, and each fold is held out once.

# %%
def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): each digit contributes round(val_fraction * its count) to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_val = int(round(val_fraction * len(members)))
        if n_val in (0, len(members)):
            side = "validation" if n_val == 0 else "training"
            raise SettingError("val_fraction", f"{val_fraction} leaves digit {digit} ({len(members)} examples in "
                               f"train.csv) with no {side} example; use a larger train.csv or another fraction")
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) indices of each fold: each digit's examples, shuffled, dealt round the folds."""
    counts = np.bincount(labels, minlength=10)
    rarest = int(counts.argmin())
    if counts[rarest] < folds:
        raise SettingError("folds", f"{folds}: digit {rarest} has only {counts[rarest]} examples in train.csv, so "
                           f"some fold would hold none; use fewer folds or a larger train.csv")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == digit)) for digit in range(10)])
    # One deal round the folds, digit after digit: the folds' sizes differ by at most one.
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[order] = np.arange(len(order)) % folds
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(folds)]


# %% [markdown]
# ### L-BFGS: the optimum, not a number of epochs
#
# The loss above is convex, so it has one optimum, and a fit that reaches it needs no learning rate,
# no epochs and no early stopping. Most tutorials run a few epochs of SGD or Adam and stop short: on
# the sample, 10 epochs of Adam lose 0.0063 ± 0.0020 of cross-validated accuracy against the optimum,
# and 30 epochs still lose 0.0017 ± 0.0006. L-BFGS uses the whole training set at each step and a
# short memory of past gradients to estimate the curvature; it stops when every gradient entry is at
# most 1e-4, as scikit-learn's lbfgs does on the same mean-loss-plus-penalty scale.
#
# It is written out in plain tensor operations so that many models (K folds x the strengths tried)
# are fitted at once, each with its own curvature history and step length: batching changes no model's
# iterates, and a model that has converged drops out of the batch. (torch.optim's LBFGS fits one
# model and imports torch._dynamo, about a second.)

# %%
MEMORY = 10  # curvature pairs kept, as scikit-learn's lbfgs (scipy's default)
ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
MAX_HALVINGS = 30
# Stop when every model's largest gradient entry is this small: scikit-learn's lbfgs default, on the
# same mean-loss-plus-penalty scale, so both stop at the same distance from the optimum.
OPTIMUM_TOL = 1e-4
MAX_ITER = 1000  # scikit-learn's cap; the sample needs about a hundred
# A model whose objective has not fallen for this many iterations in a row is stuck at float32's
# precision short of the tolerance (a degenerate problem): it stops, marked as not converged.
STALLED_AFTER = 5


@dataclass
class Step:
    """One L-BFGS iteration as minimise reports it."""
    iteration: int
    largest_gradient: float  # the largest gradient entry of any model still moving (or of all, at the end)
    moving: int  # models neither converged nor stalled
    started: float  # the largest gradient entry of any model where the fit started
    x: torch.Tensor
    value: torch.Tensor  # every model's objective


def minimise(objective, x: torch.Tensor, dims: tuple[int, ...], max_iter: int, tol: float):
    """Minimise every model's objective(x, active) -> (values, gradient) from x until each one's largest
    gradient entry is at most `tol` (or it stalls), yielding a Step each iteration. `dims`: a model's
    parameter dimensions (the others index models); objective may skip models that are not active."""
    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dims, keepdim=True)

    def amax(a: torch.Tensor) -> torch.Tensor:
        return a.abs().amax(dims, keepdim=True)

    everyone = torch.ones_like(dot(x, x), dtype=torch.bool)
    value, grad = objective(x, everyone)
    value = value.view_as(everyone)
    started = float(amax(grad).max())  # once: where the fit starts, for its progress
    flat_streak = torch.zeros_like(value, dtype=torch.int64)  # iterations in a row without a decrease
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / y.s), oldest first
    for iteration in range(1, max_iter + 1):
        active = (amax(grad) > tol) & (flat_streak < STALLED_AFTER)
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
        flat_streak = torch.where(moved & (new_value < value), torch.zeros_like(flat_streak), flat_streak + 1)
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
        still = (left > tol) & (flat_streak < STALLED_AFTER)
        # The one host sync an iteration besides the line search's.
        largest_moving, largest, moving = torch.stack([torch.where(still, left, torch.zeros_like(left)).max(),
                                                       left.max(), still.sum().to(left.dtype)]).tolist()
        yield Step(iteration, largest_moving if moving else largest, int(moving), started, x, value)
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
# ### Fitting every fold at once
#
# A hold-out split is one fold; K-fold cross-validation is K of them, with one model per L2 strength
# tried. `Folds` gathers each fold's training rows of the feature matrix (padded to one length, so that
# the folds stack into one tensor) and standardises each fold on its own rows; the objective folds the
# standardisation into the weights, so the big matrix is never rewritten:
# $W (x - \mu) / \sigma + b = x (W / \sigma) + (b - \mu (W / \sigma))$.

# %%
def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


class Folds:
    """Each fold's training and validation rows of the prepared images, padded to one length so that the
    folds stack into one batched tensor (the masks mark a fold's own rows), and its standardiser."""

    def __init__(self, rung: str, prepared: torch.Tensor, labels: torch.Tensor, splits: list):
        device, targets = prepared.device, labels.long()
        self.rung, self.count = rung, len(splits)
        self.train, self.train_mask = padded([to_device(rows, device) for rows, _ in splits])
        self.val, self.val_mask = padded([to_device(rows, device) for _, rows in splits])
        self.train_features, self.train_targets = prepared[self.train], targets[self.train]  # (folds, n, d)
        self.val_features, self.val_targets = prepared[self.val], targets[self.val]
        own = [self.train_features[f, :len(rows)] for f, (rows, _) in enumerate(splits)]
        self.mean, self.std = (torch.stack(s) for s in zip(*(standardiser(x, rung) for x in own)))

    def logits(self, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """W (x - m) / s + b for each fold's rows (folds, b, d) and weights (folds, d, k), as (W / s) x +
        (b - (W / s) m): the standardiser is folded into the weights, and the rows are never rewritten."""
        scaled = weight / self.std[..., None]
        return torch.baddbmm(bias - torch.bmm(self.mean[:, None, :], scaled), rows, scaled)

    @torch.no_grad()
    def scores(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple:
        """Held-out logits (folds, v, strengths, 10), and accuracy and loss (folds, strengths)."""
        logits = self.logits(self.val_features, weight, bias).view(*self.val.shape, -1, N_CLASSES)
        targets, own = self.val_targets[..., None].expand(logits.shape[:3]), self.val_mask[..., None]
        size = self.val_mask.sum(1, keepdim=True)
        correct = ((logits.argmax(-1) == targets) & own).sum(1)
        losses = F.cross_entropy(logits.permute(0, 3, 1, 2), targets, reduction="none") * own
        # In float64: a fold's accuracy is then exactly its count over its size, as the report prints it.
        return logits, correct.double() / size, losses.sum(1) / size

    @torch.no_grad()
    def model(self, weight: torch.Tensor, bias: torch.Tensor, fold: int = 0) -> SoftmaxRegression:
        """One fold's (the hold-out's) model at the first strength of weight (folds, d, 10...)."""
        model = SoftmaxRegression(self.rung).to(self.train_features.device)
        model.load_state_dict({"mean": self.mean[fold], "std": self.std[fold],
                               "linear.weight": weight[fold, :, :N_CLASSES].T,
                               "linear.bias": bias[fold, 0, :N_CLASSES]})
        return model.eval()


def padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index rows of one length (each padded with its own first entries), and which entries are its own."""
    length, device = max(map(len, rows)), rows[0].device
    own = torch.arange(length, device=device) < torch.tensor([[len(r)] for r in rows], device=device)
    return torch.stack([torch.cat([r, r[:length - len(r)]]) for r in rows]), own


# %% [markdown]
# A fit says how far it is: in a terminal a progress bar shows the iterations; in a log (Kaggle's, a
# notebook, a pipe) a plain line every 3 seconds. Both give the time so far and an estimate of the time
# left.

# %%
class Progress:
    """How far a fit is, how long it has taken and about how long is left: a tqdm bar in a terminal; in a
    log, a plain line after the first iteration and then at most one every `every` seconds, as a log keeps
    every redraw of a bar. TQDM_DISABLE=1 (tqdm's own switch) silences both.

    The time left: once some of a batch's models have converged, at the pace they have been converging
    since the first did; before that (and for a lone model), from the largest gradient entry, which must
    fall to the tolerance: L-BFGS shrinks it by a roughly steady factor an iteration, so at the pace it fell
    over the latter half of the fit so far, its remaining decades take about so many seconds."""

    def __init__(self, desc: str, tol: float, models: int, every: float = 3.0, intro: str | None = None):
        self.desc, self.tol, self.models, self.every, self.printed = desc, tol, models, every, None
        self.started, self.first_done = time.perf_counter(), None
        self.trail: list[tuple[float, float]] = []  # (seconds since the start, log10 of the largest entry)
        self.quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
        self.bar = tqdm(desc=desc, total=100, unit="%", leave=False, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
                        disable=self.quiet or not sys.stderr.isatty())
        if self.bar.disable and not self.quiet and intro:
            print(f"{desc}: {intro}", flush=True)

    def begin(self, largest: float) -> None:
        self.trail.append((0.0, math.log10(max(largest, self.tol))))

    def update(self, step: str, status: str, largest: float, moving: int) -> None:
        elapsed = time.perf_counter() - self.started
        lowest = min(self.trail[-1][1], math.log10(max(largest, self.tol)))  # its lowest yet: it may rise a bit
        self.trail.append((elapsed, lowest))
        if moving < self.models and self.first_done is None:
            self.first_done = elapsed
        left = self.seconds_left(elapsed, moving)
        if not self.bar.disable:
            self.bar.n = round(100 * elapsed / (elapsed + left)) if left is not None else 0
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.refresh()
        elif not self.quiet and (not moving or self.printed is None or elapsed - self.printed >= self.every):
            self.printed = elapsed
            if not moving:  # converged, or stalled short of the tolerance (the summary then says so too)
                estimate = "done" if largest <= self.tol else "stopped short of the optimum"
            else:
                estimate = f"about {duration(left)} left" if left is not None else "time left not known yet"
            print(f"{self.desc} {step}: {status}; {duration(elapsed)} elapsed, {estimate}", flush=True)

    def seconds_left(self, elapsed: float, moving: int) -> float | None:
        """None while nothing says yet (no model converged, the largest entry not fallen)."""
        if not moving:
            return 0.0
        if self.first_done is not None and elapsed > self.first_done:
            return (elapsed - self.first_done) / (self.models - moving) * moving
        # The least-squares slope of the lowest values over the latter half: the early plunge says little.
        recent = [point for point in self.trail if point[0] >= self.trail[-1][0] / 2]
        if len(recent) < 2:
            recent = self.trail[-2:]
        times, logs = np.array(recent).T
        spread = ((times - times.mean()) ** 2).sum()
        pace = -((times - times.mean()) * (logs - logs.mean())).sum() / spread if spread > 0 else 0.0
        return (logs[-1] - math.log10(self.tol)) / pace if pace > 0 else None

    def close(self) -> None:
        self.bar.close()


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 59.5 else f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


# %% [markdown]
# `fit_to_optimum` runs the L-BFGS above on every fold x strength model at once. Its objective, value and
# gradient together, is two matrix products per fold: the logits, and the gradient's $G^T X$. It is
# written out by hand (autograd's backward product runs several times slower on the CPU for so few
# columns), and a converged model drops out of both products, so it costs nothing more.

# %%
@dataclass
class Fit:
    """Every fold x strength model fitted: weight (folds, d, strengths * 10: a 10-column block per
    strength), bias (folds, 1, strengths * 10), and how the fit ended."""
    weight: torch.Tensor
    bias: torch.Tensor
    penalties: list[Penalty]
    weight_decays: list[list[float]]  # (folds, strengths): each model's own, from its fold's size
    iterations: int
    converged: bool  # every model's largest gradient entry reached OPTIMUM_TOL
    largest_gradient: float  # the largest entry left, of any model
    history: list[dict]  # per iteration: the objective (mean over folds, per strength); a lone
    #                      hold-out also its validation loss and accuracy


def fit_to_optimum(folds: Folds, strengths: list[Penalty], desc: str, start: torch.Tensor | None = None) -> Fit:
    """Every fold x strength model to the optimum of its mean cross-entropy + decay/2 |W|^2 (W on the
    standardised features), from zero or from `start` (folds, d + 1, strengths, 10)."""
    features, targets, std, mean = folds.train_features, folds.train_targets, folds.std, folds.mean
    (n_folds, n, d), classes = features.shape, N_CLASSES
    sizes = folds.train_mask.sum(1).tolist()  # each fold's own training images
    weight_decays = [[penalty.weight_decay(size) for penalty in strengths] for size in sizes]
    decay = torch.tensor(weight_decays, dtype=features.dtype, device=features.device)  # (folds, strengths)
    share = folds.train_mask.to(features.dtype)  # (folds, n): each row's share of its fold's mean loss
    share = share / share.sum(1, keepdim=True)  # padding rows count zero

    def objective(x: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = torch.zeros(n_folds, len(strengths), dtype=x.dtype, device=x.device), torch.zeros_like(x)
        moving = active.view(n_folds, len(strengths)).cpu()
        for f in range(n_folds):  # one fold's moving strengths at a time: converged models cost nothing
            cols = torch.nonzero(moving[f]).flatten().tolist()
            if cols:
                value[f, cols], grad[f][:, cols] = fold_objective(f, x[f][:, cols], decay[f, cols])
        return value, grad

    def fold_objective(f: int, part: torch.Tensor, decay: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Value and gradient for one fold's models part (d + 1, s, 10), written out: autograd's X^T G runs
        several times slower on the CPU for so few columns than (G^T X)^T."""
        s = part.shape[1]
        # W (x - m) / std + b = x (W / std) + (b - m (W / std)). The weights go to the product as (s * 10, d)
        # rows used transposed, the form F.linear takes: half the time of X @ W with W stored (d, s * 10).
        scaled = (part[:d].reshape(d, -1).T / std[f]).contiguous()
        logits = F.linear(features[f], scaled, part[d].reshape(-1) - scaled @ mean[f]).view(n, s, classes)
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

    models = n_folds * len(strengths)
    fitting = f"{models} models" if models > 1 else "the model"
    progress = Progress(desc, OPTIMUM_TOL, models, intro=f"fitting {fitting} to the optimum by L-BFGS (stops when "
                        f"every gradient entry is at most {OPTIMUM_TOL:g})")
    lone = models == 1 and folds.val.numel() > 0  # a lone hold-out: its validation after every iteration
    objectives, validations = [], []
    # One model's parameters: its d weight rows and its bias row (dim 1) by its 10 classes (dim 3).
    x = torch.zeros(n_folds, d + 1, len(strengths), classes, dtype=features.dtype, device=features.device) \
        if start is None else start
    for step in minimise(objective, x, (1, 3), MAX_ITER, OPTIMUM_TOL):
        if step.iteration == 1:
            progress.begin(step.started)
        progress.update(f"L-BFGS iteration {step.iteration}", f"largest gradient {step.largest_gradient:.2e}" +
                        (f", {step.moving} of {models} models still moving" if models > 1 else ""),
                        step.largest_gradient, step.moving)
        objectives.append(step.value.view(n_folds, len(strengths)).mean(0))  # kept on the device: no sync
        if lone:
            _, accuracy, loss = folds.scores(*weight_and_bias(step.x, d))
            validations.append(torch.stack([loss[0, 0].double(), accuracy[0, 0]]))
    progress.close()
    scores = torch.stack(validations).tolist() if lone else []  # each iteration's (loss, accuracy), one sync
    history = [{"iteration": i, "objective": values,
                **({"val_loss": scores[i - 1][0], "val_accuracy": scores[i - 1][1]} if lone else {})}
               for i, values in enumerate(torch.stack(objectives).tolist(), start=1)]
    weight, bias = weight_and_bias(step.x, d)
    return Fit(weight.contiguous(), bias.contiguous(), strengths, weight_decays, step.iteration,
               converged=step.largest_gradient <= OPTIMUM_TOL, largest_gradient=step.largest_gradient,
               history=history)


def weight_and_bias(x: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L-BFGS's parameters (folds, d + 1, strengths, 10) as weight (folds, d, s * 10) and bias (folds, 1, s * 10)."""
    n_folds = x.shape[0]
    return x[:, :d].reshape(n_folds, d, -1), x[:, d:].reshape(n_folds, 1, -1)


# %% [markdown]
# ### One training run
#
# `train` makes the features once, then fits: a hold-out split (and, with `refit`, the optimum again on
# all of `train.csv`), or K folds x the strengths tried (section 7). Either way the result says which
# images were validated, with what probabilities, and which model predicts the test set.

# %%
@dataclass
class CVEstimate:
    """K-fold cross-validation: the mean held-out accuracy over the folds, ± its standard error."""
    folds: int
    accuracy: float
    stderr: float
    fold_accuracies: list[float]
    penalty: str  # the strength chosen, the one with the best mean accuracy: "C = 0.1" or "weight decay 0.003"
    weight_decay: float  # its weight decay for the refit on all of train.csv, the model that predicts
    grid: list[dict]  # each strength tried: "penalty", "c", "weight_decay" (the folds' mean), "accuracy", "stderr"
    edge: str | None  # when the choice is the weakest or the strongest tried: a wider grid might do better


@dataclass
class Training:
    """What a fit produced: the model that predicts test.csv, and the held-out evidence for it."""
    model: SoftmaxRegression
    validated: np.ndarray  # indices of the train.csv images validated, each by a model that never saw it
    probabilities: torch.Tensor  # their held-out probabilities (validated, 10)
    fit: Fit  # the hold-out's fit, or the folds'
    penalty: Penalty  # the strength of the model that predicts test.csv
    weight_decay: float  # its weight decay, for the images it was fitted on
    train_images: int  # images the validated model was fitted on (with folds: all, each in K - 1 folds)
    refit_images: int | None  # images of the refit on all of train.csv, when there was one
    cv: CVEstimate | None
    seconds: float


def train(config: Config, data: DigitData, device: torch.device) -> Training:
    """Split (a digit too rare for the split is said before any work), make the features once, then fit a
    hold-out split or K folds (with the refit that predicts)."""
    clock = time.perf_counter()
    if config.folds:
        splits = stratified_folds(data.train_labels, config.folds, config.seed)
    else:
        splits = [stratified_split(data.train_labels, config.val_fraction, config.seed)]
    pixels, labels = to_device(data.train_images, device), to_device(data.train_labels, device)
    prepared = image_features(pixels, config.features)
    trained = (cross_validate if config.folds else hold_out)(config, prepared, labels, splits)
    return replace(trained, seconds=time.perf_counter() - clock)


def hold_out(config: Config, prepared: torch.Tensor, labels: torch.Tensor, splits: list) -> Training:
    """One stratified hold-out split: the model fitted on the rest, or refitted on all of train.csv."""
    (train_idx, val_idx), (penalty,) = splits[0], penalties(config)
    folds = Folds(config.features, prepared, labels, splits)
    fit = fit_to_optimum(folds, [penalty], "train")
    model = folds.model(fit.weight, fit.bias)
    with torch.no_grad():  # from the features made above rather than from the pixels again
        probabilities = model.linear(model.standardised(prepared[val_idx])).softmax(1)
    weight_decay, refit_images = fit.weight_decays[0][0], None
    if config.refit:
        model, weight_decay = fit_on_everything(config.features, prepared, labels, penalty, folds, fit, 0)
        refit_images = len(labels)
    return Training(model, val_idx, probabilities, fit, penalty, weight_decay, len(train_idx), refit_images,
                    cv=None, seconds=0.0)


def fit_on_everything(rung: str, prepared: torch.Tensor, labels: torch.Tensor, penalty: Penalty, folds: Folds,
                      fit: Fit, strength: int) -> tuple[SoftmaxRegression, float]:
    """The optimum on every training image at one strength, started from the validated fits at that
    strength (at Kaggle's size it then needs one iteration, not thirty): the model that predicts test.csv,
    and its weight decay."""
    everything = Folds(rung, prepared, labels, [(np.arange(len(labels)), np.arange(0))])
    refit = fit_to_optimum(everything, [penalty], "refit", start=warm_start(folds, fit, strength, everything))
    return everything.model(refit.weight, refit.bias), refit.weight_decays[0][0]


def warm_start(folds: Folds, fit: Fit, strength: int, refit: Folds) -> torch.Tensor:
    """The mean of the fold models at one strength, as L-BFGS parameters (1, d + 1, 1, 10) for the refit:
    each fold model moved from its own standardisation to the refit's (the same scores for raw features)."""
    columns = slice(strength * N_CLASSES, (strength + 1) * N_CLASSES)
    raw = fit.weight[..., columns] / folds.std[..., None]  # (folds, d, 10): per unit of each raw feature
    offset = fit.bias[:, 0, columns] - torch.einsum("fd,fdk->fk", folds.mean, raw)  # (folds, 10)
    raw, offset = raw.mean(0), offset.mean(0)
    weight, bias = raw * refit.std[0][:, None], offset + refit.mean[0] @ raw
    return torch.cat([weight, bias[None]])[None, :, None, :].contiguous()


def cross_validate(config: Config, prepared: torch.Tensor, labels: torch.Tensor, splits: list) -> Training:
    """K folds x the strengths tried, fitted at once; the strength with the best mean held-out accuracy;
    then the optimum on all of train.csv at that strength, which predicts."""
    strengths = penalties(config)
    folds = Folds(config.features, prepared, labels, splits)
    fit = fit_to_optimum(folds, strengths, f"{config.folds}-fold CV")
    logits, accuracy, _ = folds.scores(fit.weight, fit.bias)  # accuracy: (folds, strengths)
    mean, stderr = accuracy.mean(0), accuracy.std(0) / math.sqrt(config.folds)
    chosen = int(torch.argmax(mean))  # the first of equals: the grid runs from the weakest penalty
    # What CV chose the strength for: one more model, on all the data, at 1/(folds x strengths) of the CV's
    # cost. (The average of the fold models scored 0.944 on the sample's test set, the refit 0.946.)
    model, weight_decay = fit_on_everything(config.features, prepared, labels, strengths[chosen], folds, fit, chosen)
    # Each training image's probabilities from the one fold model that did not train on it.
    n = len(labels)
    out_of_fold = torch.empty(n, N_CLASSES, device=prepared.device)
    out_of_fold[folds.val[folds.val_mask]] = logits[..., chosen, :].softmax(-1)[folds.val_mask]
    edge = None
    if len(strengths) > 1 and chosen in (0, len(strengths) - 1):
        edge = f"the {'weakest' if chosen == 0 else 'strongest'} penalty tried: a {'weaker' if chosen == 0 else 'stronger'} " \
               f"one might do better still"
    grid = [{"penalty": str(p), "c": p.c, "weight_decay": float(np.mean([row[k] for row in fit.weight_decays])),
             "accuracy": float(m), "stderr": float(e)} for k, (p, m, e) in enumerate(zip(strengths, mean, stderr))]
    estimate = CVEstimate(config.folds, float(mean[chosen]), float(stderr[chosen]), accuracy[:, chosen].tolist(),
                          str(strengths[chosen]), weight_decay, grid, edge)
    return Training(model, np.arange(n), out_of_fold, fit, strengths[chosen], weight_decay, n, n, estimate,
                    seconds=0.0)


def fit_summary(iterations: int, converged: bool, largest_gradient: float, folds: int) -> str:
    """How a fit ended, honestly: at the optimum, or where and why it stopped short of it."""
    what = f"{folds}-fold CV" if folds else "the hold-out fit"
    if converged:
        return f"{what}: fitted to the optimum by L-BFGS in {iterations} iterations"
    why = f"stopped at the {MAX_ITER}-iteration cap" if iterations >= MAX_ITER else \
        "stopped because the objective no longer fell at float32's precision"
    return (f"{what}: NOT at the optimum: {why} after {iterations} iterations, largest gradient entry "
            f"{largest_gradient:.2e} (the optimum's is at most {OPTIMUM_TOL:g})")


def training_summary(training: Training) -> str:
    fit = training.fit
    return fit_summary(fit.iterations, fit.converged, fit.largest_gradient, training.cv.folds if training.cv else 0)


def learning_curve(training: Training) -> Picture:
    """The objective per L-BFGS iteration; a lone hold-out also its validation loss and accuracy."""
    history = training.fit.history
    iterations = [record["iteration"] for record in history]
    figure = Figure(figsize=(10, 3.8))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    strengths = training.fit.penalties
    for k, penalty in enumerate(strengths):
        label = "training objective" + (f" ({penalty})" if len(strengths) > 1 else "")
        loss_axes.plot(iterations, [record["objective"][k] for record in history], label=label, linewidth=1.5)
    if "val_loss" in history[0]:
        loss_axes.plot(iterations, [record["val_loss"] for record in history], "--", color="tab:red",
                       label="validation loss", linewidth=1.5)
        accuracy_axes.plot(iterations, [record["val_accuracy"] for record in history], color="tab:red",
                           label="validation accuracy")
        accuracy_axes.set_xlabel("L-BFGS iteration")
        low = min(record["val_accuracy"] for record in history)
        accuracy_axes.set_ylim(max(0.0, low - 0.02), 1.0)
    elif training.cv:  # the batched folds keep no validation per iteration: their CV accuracy per strength
        grid = training.cv.grid
        accuracy_axes.errorbar([g["weight_decay"] for g in grid], [g["accuracy"] for g in grid],
                               yerr=[g["stderr"] for g in grid], marker="o", capsize=4, color="tab:red",
                               label=f"{training.cv.folds}-fold CV accuracy ± 1 SE")
        accuracy_axes.set_xscale("log")
        accuracy_axes.set_xlabel("weight decay (the L2 strength), each fitted to its optimum")
        low = min(g["accuracy"] - g["stderr"] for g in grid)
        accuracy_axes.set_ylim(max(0.0, low - 0.02), 1.0)
    loss_axes.set_ylim(bottom=0.0)
    loss_axes.set_xlabel("L-BFGS iteration")
    loss_axes.set_title("loss")
    accuracy_axes.set_title(f"{training.cv.folds}-fold CV accuracy by weight decay" if training.cv and
                            "val_loss" not in history[0] else "accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"Learning curve: {training_summary(training)}")
    figure.tight_layout()
    return picture("learning_curve.png", figure)


# %% tags=["active-ipynb"]
# training = train(config, data, device)
# print(training_summary(training))
# print(f"penalty: {training.penalty}: weight decay {training.weight_decay:.3g}")
# curve = learning_curve(training)
# curve

# %% [markdown]
# ## 6. Validation
#
# Accuracy, the loss and the confusion matrix of the held-out images (with `folds`, every training
# image, each from the fold model that did not see it); then the mistakes the model made most
# confidently, and what it learned: one template per digit over the 28x28 image its pixel block sees,
# red where ink is evidence for the digit and blue where it is evidence against.

# %%
@dataclass
class Scores:
    """How the validated images scored."""
    accuracy: float
    loss: float
    images: int
    per_class_accuracy: list[float | None]  # None: no validation image of that digit
    confusion_matrix: list[list[int]]  # rows: true digits; columns: predicted digits


def validation_scores(truth: np.ndarray, probabilities: torch.Tensor) -> Scores:
    predicted = probabilities.argmax(1).cpu().numpy()
    confusion = np.bincount(truth.astype(np.int64) * 10 + predicted, minlength=100).reshape(10, 10)
    totals = confusion.sum(1)
    per_class = [float(confusion[d, d] / totals[d]) if totals[d] else None for d in range(10)]
    loss = F.nll_loss(probabilities.cpu().clamp_min(1e-12).log(), torch.from_numpy(truth).long())
    return Scores(float((predicted == truth).mean()), loss.item(), len(truth), per_class, confusion.tolist())


def confusion_lines(scores: Scores) -> list[str]:
    lines = ["validation confusion matrix (rows: true digit, columns: predicted) and per-class accuracy:",
             "true\\pred " + " ".join(f"{d:>5}" for d in range(10)) + f"{'acc':>8}"]
    for digit, (row, accuracy) in enumerate(zip(scores.confusion_matrix, scores.per_class_accuracy)):
        shown = f"{accuracy:6.1%}" if accuracy is not None else f"{'-':>6}"
        lines.append(f"{digit:>9} " + " ".join(f"{n:>5}" for n in row) + f"  {shown}")
    return lines


def confusion_picture(scores: Scores) -> Picture:
    counts = np.asarray(scores.confusion_matrix)
    mistakes = counts.copy()
    np.fill_diagonal(mistakes, 0)
    figure = Figure(figsize=(6.4, 5.6))
    axes = figure.add_subplot()
    axes.imshow(mistakes, cmap="Reds", vmin=0, vmax=max(int(mistakes.max()), 1))
    for (true, predicted), count in np.ndenumerate(counts):
        if count or true == predicted:
            axes.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                      color="black" if true == predicted or count < 0.6 * mistakes.max() else "white",
                      fontweight="bold" if true == predicted else "normal")
    axes.set_xticks(range(10))
    axes.set_yticks(range(10), [f"{d}  ({a:.1%})" if a is not None else f"{d}  (-)"
                                for d, a in enumerate(scores.per_class_accuracy)])
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit (its accuracy)")
    axes.set_title(f"Validation confusion matrix: {counts.trace()} of {counts.sum()} correct\n"
                   "red: mistakes, darker = more")
    figure.tight_layout()
    return picture("confusion.png", figure)


def mistakes_picture(pixels: np.ndarray, labels: np.ndarray, probabilities: torch.Tensor,
                     count: int = 24) -> Picture:
    """The validation images the model got wrong most confidently: true -> predicted (probability)."""
    confidence, predicted = probabilities.detach().cpu().max(1)
    wrong = torch.nonzero(predicted != torch.as_tensor(labels).long()).flatten()
    chosen = wrong[confidence[wrong].argsort(descending=True, stable=True)][:count].tolist()
    images = np.asarray(pixels)[chosen].reshape(-1, SIDE, SIDE) / 255
    titles = [f"{labels[i]} -> {predicted[i]} ({confidence[i]:.2f})" for i in chosen]
    heading = (f"The {len(chosen)} most confident of {len(wrong)} mistakes on {len(labels)} validation images\n"
               "true -> predicted (the probability the model gave its prediction)")
    if not chosen:
        return picture("errors.png", image_grid(np.ones((1, SIDE, SIDE)), ["no mistakes"], 1, heading))
    return picture("errors.png", image_grid(images, titles, 8, heading))


def weights_picture(model: SoftmaxRegression) -> Picture:
    # Per unit of ink (W / std, one std for all pixels): rarely inked, barely trained border pixels stay
    # near zero. One colour scale for all ten, at the 99.5th percentile so a few pixels don't wash it out.
    weights = (model.linear.weight[:, :N_PIXELS] / model.std[:N_PIXELS]).detach().cpu()
    limit = float(weights.abs().quantile(0.995).clamp_min(1e-12))
    seen = {"pixels": "raw", "deskew": "deskewed"}.get(model.features, "normalised")
    heading = (f"What the model learned: one template per digit over the {seen} 28x28 image\n"
               "red: ink here is evidence for the digit, blue: evidence against")
    return picture("weights.png", image_grid(weights.view(10, SIDE, SIDE).numpy(), [f"digit {d}" for d in range(10)],
                                             5, heading, cmap="RdBu_r", scale=(-limit, limit)))


# %% tags=["active-ipynb"]
# truth = data.train_labels[training.validated]
# scores = validation_scores(truth, training.probabilities)
# print(f"validation accuracy: {scores.accuracy:.4f} ({scores.images} images), loss {scores.loss:.4f}")
# print("\n".join(confusion_lines(scores)))
# confusion = confusion_picture(scores)
# confusion

# %% tags=["active-ipynb"]
# mistakes = mistakes_picture(data.train_images[training.validated], truth, training.probabilities)
# mistakes

# %% tags=["active-ipynb"]
# weights = weights_picture(training.model)
# weights

# %% [markdown]
# ## 7. Cross-validation: how good will it be on the leaderboard?
#
# A hold-out of a few hundred images says little: its accuracy moves by a point from one split to
# another. With `folds = K`, each digit's images are dealt round K folds, a model is fitted on all but
# each fold and scored on that fold, and the mean of the K held-out accuracies ± its standard error is
# the expected public score. Every image is validated once, by the one fold model that did not see it.
# All K fits (and, with `weight_decay = "auto"`, every strength of the grid for each fold) run as one
# batched L-BFGS program; the strength with the best mean is chosen, and the model submitted is the
# optimum on all of `train.csv` at that strength.

# %%
def cv_lines(cv: CVEstimate) -> list[str]:
    lines = [f"{cv.folds}-fold CV accuracy by fold: " + ", ".join(f"{a:.4f}" for a in cv.fold_accuracies)]
    if len(cv.grid) > 1:
        lines += [f"  {g['penalty']} (weight decay {g['weight_decay']:.2g}): {g['accuracy']:.4f} ± {g['stderr']:.4f}" +
                  ("  <- chosen" if g["penalty"] == cv.penalty else "") for g in cv.grid]
    if cv.edge:
        lines.append(f"note: the choice is {cv.edge}")
    chosen = f", {cv.penalty} chosen by it" if len(cv.grid) > 1 else ""
    lines.append(f"expected public score {cv.accuracy:.4f} ± {cv.stderr:.4f} ({cv.folds}-fold CV){chosen}")
    return lines


# %% tags=["active-ipynb"]
# if training.cv:
#     print("\n".join(cv_lines(training.cv)))
# else:
#     print("no cross-validation in this run: set folds=5 in SETTINGS for the expected public score")

# %% [markdown]
# ## 8. Prediction and submission.csv
#
# The model reads raw test pixels (its features and standardisation are part of it), in chunks, and
# the most probable digit of each image is its label. Kaggle wants `ImageId,Label`, ImageId from 1.

# %%
@torch.no_grad()
def predict(model: SoftmaxRegression, pixels: torch.Tensor) -> torch.Tensor:
    """Class probabilities (n, 10) for uint8 pixels (n, 784), in chunks: 0.8 s, not 1.0, for 28,000 images."""
    return torch.cat([model.eval()(part).softmax(1) for part in pixels.split(16384)])


def submission_table(labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels})


# %% tags=["active-ipynb"]
# test_labels = predict(training.model, to_device(data.test_images, device)).argmax(1).cpu().numpy()
# submission = submission_table(test_labels)
# submission.head()

# %% [markdown]
# ## 9. Running it on Kaggle and elsewhere
#
# What a run needs that a reader does not: each output written whole (a temporary name, then a
# rename), `metrics.json` (the run's record, written last), the summary the script prints, the command
# line, and `main()`, which the script form and `digit-recognizer train` both run.

# %%
KAGGLE_WORKING = Path("/kaggle/working")
RECORD_FORMAT = 2  # metrics.json: 2 has "format" and "fit"; runs of older kits have neither
PICTURES = ("weights.png", "errors.png", "confusion.png", "learning_curve.png", "features.png")


def default_output() -> Path:
    """Kaggle offers the files in /kaggle/working for submission; elsewhere a folder under the current one."""
    on_kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_WORKING.is_dir()
    return KAGGLE_WORKING if on_kaggle else Path("output")


def os_reason(exc: OSError) -> str:
    """'no space left on device', 'read-only file system', ... as a lower-case phrase."""
    return exc.strerror.lower() if exc.strerror else str(exc)


def check_output(folder: Path) -> None:
    """Before minutes of training, not after them: the output folder can be made and written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # an unnamed file where the OS can: it leaves no trace
    except OSError as exc:
        doing = "write the outputs there" if folder.is_dir() else "create it"
        raise UserError(f"{folder}: cannot {doing} ({os_reason(exc)}); --output takes the folder the outputs "
                        f"go in") from None


def write_whole(path: Path, write) -> None:
    """write(temporary path), then rename it to `path`: a crash never leaves half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write it ({os_reason(exc)}); nothing was written") from None
    finally:
        try:  # nothing half-written is left, whatever happened
            temp.unlink(missing_ok=True)
        except OSError:
            pass


def write_submission(path: Path, labels: np.ndarray) -> None:
    rows = "".join(f"{i},{label}\n" for i, label in enumerate(labels.tolist(), 1))
    write_whole(path, lambda temp: temp.write_text(f"ImageId,Label\n{rows}", encoding="utf-8"))


def save_model(model: SoftmaxRegression, path: Path, extra: dict) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = BytesIO()  # written by Python, so that a full disk is an OSError, not torch's RuntimeError
    torch.save({"format": MODEL_FORMAT, "features": model.features, "state_dict": state, **extra}, buffer)
    write_whole(path, lambda temp: temp.write_bytes(buffer.getvalue()))


def settings_changed(config: Config) -> dict:
    """The settings that differ from the defaults and that the run used (refit and val_fraction do
    nothing with folds), in Config's order: what `runs` shows and a push writes into SETTINGS."""
    unused = {"val_fraction", "refit"} if config.folds else set()
    default = Config()
    return {f.name: getattr(config, f.name) for f in fields(Config)
            if f.name not in unused and getattr(config, f.name) != getattr(default, f.name)}


def unused_settings(config: Config) -> str | None:
    """One line naming the settings changed from their defaults that this run does not use, or None."""
    default = Config()
    unused = [name for name in ("val_fraction", "refit") if config.folds and
              getattr(config, name) != getattr(default, name)]
    if not unused:
        return None
    return (f"note: {' and '.join(flag(name, getattr(config, name)) for name in unused)} "
            f"{'does' if len(unused) == 1 else 'do'} not apply with folds and {'is' if len(unused) == 1 else 'are'} "
            f"ignored: every training image is validated once, by the folds, and the model submitted is "
            f"always the refit on all of train.csv")


def flag(name: str, value) -> str:
    """A setting as its command-line flag: ('folds', 5) -> '--folds 5', ('refit', False) -> '--no-refit'."""
    spelled = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return spelled if value else f"--no-{spelled[2:]}"
    return f"{spelled} {value}"


# %% [markdown]
# `metrics.json` is the run's record: the settings, the scores, how the fit ended and which penalty it
# used, the CV estimate, the device and the timings. `write_outputs` writes every file of a run, the
# record last; a picture that cannot be drawn is a warning in the record, never a lost submission.

# %%
@dataclass
class RunRecord:
    """metrics.json: the run's one record (written last, so that its presence means a finished run)."""
    format: int
    data: str
    config: dict
    settings_changed: dict
    examples: dict  # images: "train" (each validated model's), "validation", "test"
    val_accuracy: float
    val_loss: float
    per_class_accuracy: list
    confusion_matrix: list
    fit: dict  # "iterations", "converged", "largest_gradient"; the model that predicts: "penalty", "weight_decay",
    #            "images" (what it was fitted on)
    refit: dict | None  # {"examples": n} when a refit on all of train.csv predicts
    cv: dict | None  # CVEstimate's fields, with folds
    history: list
    device: str
    torch_version: str
    python_version: str
    timings_seconds: dict
    pictures: list
    pictures_error: str | None = None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def run_pictures(config: Config, data: DigitData, training: Training, scores: Scores) -> list[Picture]:
    """The pictures of sections 3, 5 and 6, in the order of PICTURES, as the notebook draws them."""
    validated = training.validated
    return [weights_picture(training.model),
            mistakes_picture(data.train_images[validated], data.train_labels[validated], training.probabilities),
            confusion_picture(scores), learning_curve(training),
            features_picture(data.train_images[:5], config.features)]


def write_outputs(out: Path, config: Config, data: DigitData, training: Training, scores: Scores,
                  test_labels: np.ndarray, pictures: list[Picture], timings: dict,
                  pictures_error: str | None = None) -> RunRecord:
    """submission.csv, model.pt and the pictures, then (last) metrics.json."""
    clock = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    write_submission(out / "submission.csv", test_labels)
    # "data": what `predict` defaults to, so a model trained on real data never predicts the sample unasked.
    save_model(training.model, out / "model.pt", {"config": asdict(config), "val_accuracy": scores.accuracy,
                                                   "data": data.source})
    written = []
    for shown in pictures:  # a run is worth keeping without its pictures: a failure is a warning
        try:
            write_whole(out / shown.name, lambda temp: temp.write_bytes(shown.png))
        except UserError as exc:
            pictures_error = str(exc)
            print(f"warning: could not write the run's pictures ({exc}); the run itself is complete", file=sys.stderr)
            break
        written.append(shown.name)
    timings = {**timings, "write": time.perf_counter() - clock}
    fit = training.fit
    record = RunRecord(
        format=RECORD_FORMAT, data=data.source, config=asdict(config), settings_changed=settings_changed(config),
        examples={"train": training.train_images, "validation": scores.images, "test": len(test_labels)},
        val_accuracy=scores.accuracy, val_loss=scores.loss, per_class_accuracy=scores.per_class_accuracy,
        confusion_matrix=scores.confusion_matrix,
        fit={"iterations": fit.iterations, "converged": fit.converged, "largest_gradient": fit.largest_gradient,
             "penalty": str(training.penalty), "weight_decay": training.weight_decay,
             "images": training.refit_images or training.train_images},
        refit={"examples": training.refit_images} if training.refit_images else None,
        cv=asdict(training.cv) if training.cv else None, history=fit.history,
        device=describe_device(training.model.linear.weight.device), torch_version=torch.__version__,
        python_version=platform.python_version(), timings_seconds=timings,
        pictures=written, pictures_error=pictures_error)
    write_whole(out / "metrics.json", lambda temp: temp.write_text(json.dumps(asdict(record), indent=2) + "\n"))
    return record


# %% [markdown]
# `run` is the whole notebook in one call, for the script and for `digit-recognizer train`; the summary
# it prints ends with the validation accuracy and, with folds, the expected public score.

# %%
def run(config: Config, data: DigitData, out: Path, timings: dict | None = None) -> RunRecord:
    """One training run: the steps of sections 1 to 8 as the notebook runs them, then the outputs."""
    timings = dict(timings or {})  # the caller's own, e.g. import and load seconds
    device = training_device(config.device)
    training = train(config, data, device)
    timings["fit"] = training.seconds
    scores = validation_scores(data.train_labels[training.validated], training.probabilities)
    clock = time.perf_counter()
    test_labels = predict(training.model, to_device(data.test_images, device)).argmax(1).cpu().numpy()
    timings["predict"] = time.perf_counter() - clock
    clock = time.perf_counter()
    try:
        pictures, problem = run_pictures(config, data, training, scores), None
    except Exception as exc:  # noqa: BLE001  (a run is worth keeping without its pictures)
        pictures, problem = [], f"{type(exc).__name__}: {exc}"
        print(f"warning: could not draw the run's pictures ({problem}); the run itself is complete",
              file=sys.stderr)
    timings["pictures"] = time.perf_counter() - clock
    return write_outputs(out, config, data, training, scores, test_labels, pictures, timings, problem)


def summary_lines(record: RunRecord, folder: Path, folder_kind: str, total_seconds: float) -> list[str]:
    """The run's summary, key lines last; `folder_kind` is "run folder" locally, "output folder" in the kernel."""
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in record.timings_seconds.items())
    cv, fit = record.cv, record.fit
    fitted = fit_summary(fit["iterations"], fit["converged"], fit["largest_gradient"], cv["folds"] if cv else 0)
    return [f"device: {record.device}; {fitted}", penalty_line(record.fit),
            f"timings: {timings}; total {total_seconds:.2f}s",
            *confusion_lines(Scores(record.val_accuracy, record.val_loss, record.examples["validation"],
                                    record.per_class_accuracy, record.confusion_matrix)),
            *outcome_lines(record, folder, folder_kind)]


def penalty_line(fit: dict) -> str:
    """Which L2 strength the predicting model used, and why."""
    why = f" = 1 / (C n) for the n = {fit['images']} images it was fitted on" if fit["penalty"].startswith("C") else ""
    return f"penalty: {fit['penalty']}: weight decay {fit['weight_decay']:.3g}{why}"


def outcome_lines(record: RunRecord, folder: Path, folder_kind: str) -> list[str]:
    """Which model predicts, where the files are, and the accuracy (with folds, the expected public score)."""
    cv = record.cv
    lines = []
    if cv:
        lines.append(f"predictions from the refit to the optimum on all {record.refit['examples']} training "
                     f"images at {cv['penalty']} (weight decay {cv['weight_decay']:.3g})")
    elif record.refit:
        lines.append(f"predictions from a refit to the optimum on train+validation ({record.refit['examples']} "
                     f"images)")
    lines.append(f"{folder_kind}: {folder}")
    if record.pictures:
        lines.append(f"pictures: {', '.join(record.pictures)} in the {folder_kind}")
    lines.append(f"submission: {folder / 'submission.csv'}")
    kind = "out-of-fold: each image validated by the fold fit that did not see it" if cv else "held out"
    lines.append(f"validation accuracy: {record.val_accuracy:.4f} ({record.examples['validation']} images, {kind})")
    if cv:  # the expected public score, last
        lines.append(cv_lines(CVEstimate(**cv))[-1])
    return lines


# %% [markdown]
# ### The command line
#
# As a script (`python kernel.py --input DATA --output OUT`) every setting is also a flag, and a flag
# given on the command line overrides its setting. Such a hand run replaces the files it writes in
# `--output` (each one whole) and touches nothing else there.

# %%
def program_name() -> str:
    """The script's own name for its usage and error lines (on Kaggle, the name the push gave it)."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] not in ("", "-c") else "kernel.py"


def add_settings_flags(parser, defaults: Config | None = None) -> None:
    """One flag per Config field, so the kernel and `digit-recognizer train` accept the same options."""
    defaults = defaults or Config()
    for f in fields(Config):
        about, default = f.metadata["help"], getattr(defaults, f.name)
        spelled = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(spelled, action=argparse.BooleanOptionalAction, default=default, help=about)
            continue
        kind = {"seed": int, "folds": int, "val_fraction": float, "weight_decay": weight_decay_value}.get(f.name, str)
        parser.add_argument(spelled, type=kind, default=default, choices=f.metadata["choices"],
                            help=f"{about} (default: {default})")


def weight_decay_value(text: str) -> float | str:
    if text.strip().lower() in ("scaled", "auto"):
        return text.strip().lower()
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'scaled', 'auto' or a number, got {text!r}") from None


def joined_negative_numbers(argv: list[str]) -> list[str]:
    """['--weight-decay', '-1e-3'] -> ['--weight-decay=-1e-3']: argparse takes a value that starts with '-'
    and is not a plain decimal for a flag, and would say 'expected one argument' instead of the range."""
    joined: list[str] = []
    for token in argv:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and token.startswith("-"):
            try:
                float(token)
            except ValueError:
                pass
            else:
                joined[-1] = f"{joined[-1]}={token}"
                continue
        joined.append(token)
    return joined


def config_from_flags(args: argparse.Namespace, base: Config | None = None) -> Config:
    """The config the parsed flags make (a value no run could use: SettingError, said with as_flag)."""
    return replace(base or Config(), **{f.name: getattr(args, f.name) for f in fields(Config)})


def as_flag(exc: SettingError) -> str:
    """A setting's error as the command line says it, with the flag's spelling (--weight-decay)."""
    return f"--{exc.name.replace('_', '-')} {exc.problem}"


def parse_command_line(argv: list[str], settings: dict):
    parser = argparse.ArgumentParser(prog=program_name(), description="Train multinomial logistic regression on "
                                     "Kaggle's Digit Recognizer data, validate it and write submission.csv.")
    parser.add_argument("--input", type=Path, help=f"the folder holding train.csv and test.csv, or a folder to "
                        f"search below (default: search {KAGGLE_INPUT})")
    parser.add_argument("--output", type=Path, help=f"where submission.csv, model.pt and metrics.json go "
                        f"(default: {KAGGLE_WORKING} on Kaggle, else ./output)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (default: off)")
    try:
        base = Config.from_settings(settings)  # the SETTINGS cell: each flag's default
    except SettingError as exc:  # said as the cell spells it, not as a flag
        raise UserError(f"SETTINGS: {exc}") from None
    add_settings_flags(parser, base)
    args = parser.parse_args(joined_negative_numbers(argv))
    return args, config_from_flags(args, base)


def main(argv: list[str] | None = None, settings: dict | None = None) -> int:
    """The script form: find the data, train, write the outputs, print the summary."""
    if argv is None:  # in a notebook sys.argv holds the Jupyter launcher's flags, not ours
        argv = [] if "ipykernel" in sys.modules else sys.argv[1:]
    debug = "--debug" in argv
    try:
        args, config = parse_command_line(argv, settings or {})
        note = unused_settings(config)
        if note:
            print(note, file=sys.stderr)
        start = time.perf_counter()
        out = args.output or default_output()
        check_output(out)  # before minutes of training, not after them
        data = load_data(find_data(args.input or KAGGLE_INPUT))
        print(f"data: {data.source} ({len(data.train_labels)} train, {len(data.test_images)} test images)")
        record = run(config, data, out, {"load": time.perf_counter() - start})
        print(*summary_lines(record, out, "output folder", time.perf_counter() - start), sep="\n")
        return 0
    except (UserError, OSError) as exc:
        if debug:
            raise
        message = as_flag(exc) if isinstance(exc, SettingError) else str(exc)
        print(f"{program_name()}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{program_name()}: interrupted; each output written so far is complete, the others are as they "
              f"were", file=sys.stderr)
        return 130


# %% [markdown]
# In the notebook, the run's files are written here: `submission.csv`, `model.pt`, the pictures shown
# above, and `metrics.json`.

# %% tags=["active-ipynb"]
# out = default_output()
# check_output(out)
# record = write_outputs(out, config, data, training, scores, test_labels,
#                        [weights, mistakes, confusion, curve, ladder], {"fit": training.seconds})
# print("\n".join(outcome_lines(record, out, "output folder")))

# %% tags=["active-py"]
if __name__ == "__main__":
    raise SystemExit(main(settings=SETTINGS))
