"""The run's five PICTURES, each one titled_grid: title lines over named tiles
(digits, confusion cells, charts). Drawn with Pillow: torchvision's import loads torch._dynamo (1 s).
"""
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .deskew import SIDE
from .features import DIRECTIONS, N_PIXELS, POOLED, image_features
from .fileio import atomic_write

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
