"""Pictures of a run: weights.png (what the model learned), errors.png (its most confident mistakes),
confusion.png, learning_curve.png (loss and accuracy per epoch, or CV accuracy per L2 strength) and
features.png (a few digits through each rung of the feature ladder).

Drawn with tensor reshaping and Pillow's own font; not torchvision, whose import loads torch._dynamo
(a second of start-up for a few lines of grid layout).
"""
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .features import DIRECTIONS, N_PIXELS, POOLED, image_features
from .fileio import atomic_write

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
