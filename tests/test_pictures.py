"""The pictures every run writes (weights, errors, confusion, learning curve, features), from a real default run."""
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from digit_recognizer.core.config import Config
from digit_recognizer.local_data import load_data
from digit_recognizer.saved_model import load_model
from digit_recognizer.core import pictures
from digit_recognizer.core.deskew import SIDE as DIGIT_SIDE
from digit_recognizer.core.pictures import (BLUE, ERROR_COLUMNS, ERROR_COUNT, FEATURE_DIGITS, FONT, PICTURES, RED, ZOOM,
                                            draw_confusion, draw_errors, draw_features, draw_learning_curve,
                                            draw_weights, write_run_pictures)
from digit_recognizer.core.pipeline import run_training
from digit_recognizer.core.split import stratified_split
from digit_recognizer.core.train import predict

TILE = DIGIT_SIDE * ZOOM


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One default run on the embedded sample, shared by this module's tests (it takes seconds)."""
    out = tmp_path_factory.mktemp("run")
    data = load_data(None)
    metrics = run_training(Config(), data, out)
    _, val_idx = stratified_split(data.train_labels, Config().val_fraction, Config().seed)
    return out, metrics, data, val_idx


@pytest.fixture
def drawn(monkeypatch):
    """What each draw_* hands the layout (title, tiles, names), recorded on the way: it still draws."""
    calls, layout = [], pictures.titled_grid

    def recorded(title, tiles, names, *args, **kwargs):
        calls.append((title, tiles, names))
        return layout(title, tiles, names, *args, **kwargs)

    monkeypatch.setattr(pictures, "titled_grid", recorded)
    return calls


def rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        return np.asarray(image).astype(int)


def reddish(pixels: np.ndarray) -> int:
    return int(((pixels[..., 0] - pixels[..., 2]) > 60).sum())


def bluish(pixels: np.ndarray) -> int:
    return int(((pixels[..., 2] - pixels[..., 0]) > 60).sum())


def test_default_run_writes_the_pictures_and_records_them(default_run):
    out, metrics, _, _ = default_run
    assert metrics["pictures"] == list(PICTURES) and "pictures_error" not in metrics
    assert json.loads((out / "metrics.json").read_text())["pictures"] == list(PICTURES)
    for name in PICTURES:
        rgb(out / name)
    assert not list(out.glob(".*")), "a temporary file was left behind"


@pytest.mark.parametrize("name", PICTURES)
def test_nothing_touches_the_edge_of_a_picture(default_run, name):
    """A white margin all round: no text or tile runs off the canvas and gets clipped."""
    pixels = rgb(default_run[0] / name)
    for edge in (pixels[:4], pixels[-4:], pixels[:, :4], pixels[:, -4:]):
        assert (edge == 255).all(), f"{name} has content at its edge"


def test_weights_picture_is_a_2x5_grid_of_enlarged_diverging_templates(default_run):
    pixels = rgb(default_run[0] / "weights.png")
    height, width = pixels.shape[:2]
    assert width >= 5 * TILE and height >= 2 * TILE + 40  # plus the labels
    assert width < 5 * (TILE + 40) and height < 2 * (TILE + 80) + 120
    # Both signs of evidence are drawn, each over a good part of the ten templates.
    assert reddish(pixels) > 2000 and bluish(pixels) > 2000


def test_weight_templates_show_the_shapes_of_the_digits(default_run, drawn):
    """Red where a pixel's weight is for the digit, blue where against: the 0 template is the most against
    ink in the middle of the frame (its hole); the 1 wants ink there."""
    model, _ = load_model(default_run[0] / "model.pt")
    draw_weights(model)
    title, tiles, names = drawn[0]
    assert tiles.shape == (10, DIGIT_SIDE, DIGIT_SIDE, 3) and names == [f"digit {d}" for d in range(10)]
    assert "normalised 28x28 image" in title[0] and "784 pixels of 1176 features" in title[-1]
    redness = tiles[..., 0] - tiles[..., 2]
    pixels = slice(0, DIGIT_SIDE * DIGIT_SIDE)  # the pixel block of the features; orientation planes follow
    weights = (model.linear.weight[:, pixels] / model.std[pixels]).detach().view(10, DIGIT_SIDE, DIGIT_SIDE)
    strong = weights.abs() > 0.05 * weights.abs().max()
    assert torch.equal((redness > 0)[strong], (weights > 0)[strong])
    centre = redness[:, 10:18, 12:16].mean((1, 2))
    assert centre.argmin().item() == 0 and centre[1] > 0


def test_errors_picture_holds_the_most_confidently_wrong_validation_images(default_run, drawn):
    out, metrics, data, val_idx = default_run
    model, _ = load_model(out / "model.pt")
    probabilities = predict(model, torch.from_numpy(data.train_images[val_idx]))
    labels = data.train_labels[val_idx]
    draw_errors(data.train_images[val_idx], labels, probabilities)
    title, tiles, names = drawn[0]
    n_wrong = round((1 - metrics["val_accuracy"]) * len(val_idx))
    assert 0 < n_wrong and f"of {n_wrong} mistakes on {len(val_idx)} validation images" in title[0]
    confidence, predicted = probabilities.max(1)
    wrong = [i for i in range(len(labels)) if predicted[i] != labels[i]]
    chosen = sorted(wrong, key=lambda i: -confidence[i].item())[:ERROR_COUNT]
    assert names == [f"{labels[i]} -> {predicted[i].item()}  ({confidence[i].item():.2f})" for i in chosen]
    # The tiles are those images, dark ink on white paper as they were written.
    expected = 1 - torch.from_numpy(data.train_images[val_idx][chosen]).view(-1, DIGIT_SIDE, DIGIT_SIDE) / 255
    assert torch.allclose(tiles, expected)

    pixels = rgb(out / "errors.png")
    rows = -(-len(chosen) // ERROR_COLUMNS)
    assert pixels.shape[1] >= min(len(chosen), ERROR_COLUMNS) * TILE
    assert rows * TILE < pixels.shape[0] < rows * (TILE + 60) + 120


def test_errors_are_ordered_by_the_probability_of_the_wrong_answer(drawn, monkeypatch):
    labels = np.array([0, 1, 2, 3, 4])
    probabilities = torch.full((5, 10), 0.01)
    for i, (guess, p) in enumerate([(0, 0.99), (7, 0.6), (2, 0.5), (8, 0.9), (9, 0.7)]):
        probabilities[i, guess] = p
    images = np.arange(5, dtype=np.uint8)[:, None].repeat(784, 1)  # image i is all grey level i
    draw_errors(images, labels, probabilities)
    assert drawn[-1][2] == ["3 -> 8  (0.90)", "4 -> 9  (0.70)", "1 -> 7  (0.60)"]
    assert [round(255 * (1 - tile.mean().item())) for tile in drawn[-1][1]] == [3, 4, 1]
    monkeypatch.setattr(pictures, "ERROR_COUNT", 2)
    draw_errors(images, labels, probabilities)
    assert drawn[-1][2] == ["3 -> 8  (0.90)", "4 -> 9  (0.70)"] and "2 most confident of 3 mistakes" in drawn[-1][0][0]
    draw_errors(images[:1], labels[:1], probabilities[:1])
    assert drawn[-1][2] == [] and "0 most confident of 0 mistakes on 1 validation images" in drawn[-1][0][0]


def test_a_run_without_a_mistake_still_gets_its_errors_picture(tmp_path):
    probabilities = torch.zeros(3, 10)
    probabilities[:, 1] = 1
    picture = draw_errors(np.zeros((3, 784), np.uint8), np.array([1, 1, 1]), probabilities)
    assert picture.mode == "RGB" and picture.width > 300 and picture.height < 120


def test_confusion_picture_shades_mistakes_red_and_only_mistakes():
    perfect = np.diag(np.full(10, 420))
    assert reddish(np.asarray(draw_confusion(perfect)).astype(int)) == 0
    flawed = perfect.copy()
    flawed[9, 7] = 30
    assert reddish(np.asarray(draw_confusion(flawed)).astype(int)) > 30 * 30  # at least one cell's worth


def test_confusion_cells_carry_their_counts_and_each_row_its_share_correct(drawn):
    """The grid is 11 rows of 12 tiles: predicted digits across the top, true digits down the left,
    each true digit's share predicted right at the end of its row; empty cells off the diagonal stay blank."""
    counts = np.diag(np.full(10, 40))
    counts[4, 4], counts[4, 6] = 37, 3
    draw_confusion(counts)
    title, cells, names = drawn[0]
    assert cells.shape == (132, 1, 1, 3) and len(names) == 132
    assert names[:12] == ["", *map(str, range(10)), "correct"]
    row_4 = names[12 * 5:12 * 6]
    assert row_4 == ["4", "", "", "", "", "37", "", "3", "", "", "", "92.5%"]
    assert "397 of 400 images correct" in title[0]
    cell = cells.view(11, 12, 3)
    assert cell[5, 7, 0] - cell[5, 7, 2] > 0.4 and (cell[0] == 1).all() and (cell[:, 0] == 1).all()


def test_features_picture_shows_digits_through_every_rung(default_run):
    """features.png: FEATURE_DIGITS rows of 11 tiles: raw, deskewed, normalised, then the 8 direction planes."""
    out, _, data, val_idx = default_run
    pixels = rgb(out / "features.png")
    height, width = pixels.shape[:2]
    assert 11 * TILE <= width < 11 * (TILE + 40) and FEATURE_DIGITS * TILE < height < FEATURE_DIGITS * (TILE + 60) + 160
    # Every tile holds something dark on white paper: a digit, or its gradient energy.
    expected = draw_features(data.train_images[val_idx][:FEATURE_DIGITS], "orientations")
    assert np.array_equal(np.asarray(expected).astype(int), pixels)
    dark = (pixels.sum(-1) < 300).sum()
    assert dark > FEATURE_DIGITS * 11 * 50


def test_a_picture_that_cannot_be_written_is_reported_not_raised(default_run, tmp_path, capsys):
    """The run keeps what was written; the failure is on stderr and in the returned record."""
    out, metrics, data, val_idx = default_run
    model, _ = load_model(out / "model.pt")
    (tmp_path / "errors.png").mkdir()  # nothing can be renamed onto a folder
    probabilities = predict(model, torch.from_numpy(data.train_images[val_idx]))
    record = write_run_pictures(tmp_path, model, data.train_images[val_idx],
                                data.train_labels[val_idx], probabilities, metrics["confusion_matrix"],
                                metrics["history"], None)
    assert record["pictures"] == ["weights.png"] and "errors.png" in record["pictures_error"]
    assert "warning: could not draw the run's pictures" in capsys.readouterr().err
    rgb(tmp_path / "weights.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errors.png", "weights.png"]


def test_labels_are_drawn_in_a_readable_size():
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = draw.textbbox((0, 0), "0123456789", font=FONT)
    assert bottom - top >= 11 and right - left >= 80


def test_learning_curve_shows_training_and_validation_per_epoch_or_cv_accuracy_per_strength(default_run):
    out, metrics, _, _ = default_run
    picture = Image.open(out / "learning_curve.png")
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    for colour in (BLUE, RED):  # training in blue, validation in red, both drawn
        assert (np.abs(pixels - colour).sum(-1) < 30).sum() > 300
    # The default fit is L-BFGS: one record an iteration, the penalised objective and the iterate's validation.
    assert {"iteration", "train_loss", "val_loss", "val_accuracy"} <= set(metrics["history"][0])
    assert [r["iteration"] for r in metrics["history"]] == list(range(1, metrics["best_epoch"] + 1))
    losses = [r["train_loss"] for r in metrics["history"]]
    assert all(a >= b for a, b in zip(losses, losses[1:]))  # the line search only ever lowers the objective
    cv = {"folds": 5, "weight_decay": 0.03, "grid": [{"weight_decay": d, "accuracy": a, "stderr": 0.003}
                                                     for d, a in ((0.001, 0.93), (0.01, 0.94), (0.1, 0.935))]}
    strengths = draw_learning_curve([{"epoch": 120, "train_loss": 0.2, "val_loss": 0.3, "val_accuracy": 0.94}], cv)
    assert strengths.width < picture.width  # one chart of accuracy against the strength, not the two per epoch


def test_a_learning_curve_of_one_record_still_shows_its_points():
    """A CV run fitted by L-BFGS records one point (the folds' optimum), and so does --epochs 1."""
    def coloured(values: list[float]) -> list[int]:
        record = dict(zip(["train_loss", "val_loss", "train_accuracy", "val_accuracy"], values), epoch=1)
        pixels = np.asarray(draw_learning_curve([record], None)).astype(int)
        return [(np.abs(pixels - colour).sum(-1) < 30).sum() for colour in (BLUE, RED)]

    legends_only = coloured([0.5, float("nan"), 0.8, float("nan")])  # the blue values plot, the red ones cannot
    one = coloured([0.5, 0.4, 0.8, 0.9])
    assert one[0] == legends_only[0] and one[1] >= legends_only[1] + 2 * 20  # a red dot in each chart
