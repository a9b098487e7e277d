"""The pictures every run writes (weights, errors, confusion, learning curve, features), from real runs on the
embedded sample: what each figure holds, read back from matplotlib's own axes, texts and images."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from digit_recognizer import kernel
from digit_recognizer.kernel import (GRID_BAND, GRID_GAP, PICTURES, SIDE, Config, Training, confusion_picture,
                                     features_picture, image_features, learning_curve, mistakes_picture,
                                     stratified_folds, train, training_device, validation_scores, weights_picture)
from digit_recognizer.local_data import load_data


@pytest.fixture(scope="module")
def sample():
    return load_data(None)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, sample):
    """One default run on the embedded sample, shared by this module's tests (it takes seconds)."""
    out = tmp_path_factory.mktemp("run")
    record = kernel.run(Config(), sample, out)
    return out, record


@pytest.fixture(scope="module")
def held_out(sample) -> Training:
    return train(Config(), sample, training_device("cpu"))


@pytest.fixture(scope="module")
def auto(sample) -> Training:
    """--folds 3 --weight-decay auto on the first 1,500 training digits."""
    small = kernel.DigitData("small", sample.train_images[:1500], sample.train_labels[:1500], sample.test_images[:10])
    return train(Config(folds=3, weight_decay="auto"), small, training_device("cpu"))


def png(picture_or_path) -> np.ndarray:
    data = picture_or_path.png if isinstance(picture_or_path, kernel.Picture) else picture_or_path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def tiles(picture: kernel.Picture, columns: int) -> np.ndarray:
    """The tiles of an image grid, cut back out of its one stitched image: (n, 28, 28)."""
    canvas = np.asarray(picture.figure.axes[0].images[0].get_array())
    rows = canvas.shape[0] // (SIDE + GRID_BAND)
    return np.stack([canvas[r * (SIDE + GRID_BAND) + GRID_BAND:(r + 1) * (SIDE + GRID_BAND),
                            GRID_GAP + c * (SIDE + GRID_GAP):GRID_GAP + c * (SIDE + GRID_GAP) + SIDE]
                     for r in range(rows) for c in range(columns)])


def titles(picture: kernel.Picture) -> list[str]:
    return [text.get_text() for text in picture.figure.axes[0].texts]


def test_default_run_writes_the_pictures_and_records_them(default_run):
    out, record = default_run
    assert record.pictures == list(PICTURES) and record.pictures_error is None
    assert json.loads((out / "metrics.json").read_text())["pictures"] == list(PICTURES)
    for name in PICTURES:
        assert png(out / name).shape[0] > 100
    assert not list(out.glob(".*")), "a temporary file was left behind"


def test_the_learning_curve_keeps_accuracy_within_0_and_1_loss_above_0_and_every_series_visible(held_out):
    figure = learning_curve(held_out).figure
    loss, accuracy = figure.axes
    history = held_out.fit.history
    assert loss.get_ylim()[0] == 0 and 0 <= accuracy.get_ylim()[0] < accuracy.get_ylim()[1] <= 1
    lines = {line.get_label(): line for line in loss.lines}
    objective, validation = lines["training objective"], lines["validation loss"]
    assert list(objective.get_ydata()) == [r["objective"][0] for r in history]
    assert list(validation.get_ydata()) == [r["val_loss"] for r in history]
    # Two series that run close together stay apart to the eye: another colour and another line style.
    assert objective.get_color() != validation.get_color() and objective.get_linestyle() != validation.get_linestyle()
    (val_accuracy,) = accuracy.lines
    assert list(val_accuracy.get_ydata()) == [r["val_accuracy"] for r in history]
    assert all(0 < y <= 1 for y in val_accuracy.get_ydata())
    assert [r["iteration"] for r in history] == list(range(1, held_out.fit.iterations + 1))
    objectives = [r["objective"][0] for r in history]
    assert all(a >= b for a, b in zip(objectives, objectives[1:]))  # the line search only ever lowers it
    assert "fitted to the optimum by L-BFGS" in figure.texts[0].get_text()


def test_the_cv_chart_shows_each_strengths_accuracy_with_its_standard_error(auto):
    figure = learning_curve(auto).figure
    loss, accuracy = figure.axes
    grid = auto.cv.grid
    assert accuracy.get_title() == "3-fold CV accuracy by weight decay" and accuracy.get_xscale() == "log"
    (bars,) = accuracy.containers  # one series, its error bars the standard errors
    x, y = bars.lines[0].get_data()
    assert list(x) == [g["weight_decay"] for g in grid] and list(y) == [g["accuracy"] for g in grid]
    assert 0 <= accuracy.get_ylim()[0] and accuracy.get_ylim()[1] <= 1
    # The loss panel: one objective curve per strength, each in its own colour, all above zero.
    assert len(loss.lines) == len(grid) and len({line.get_color() for line in loss.lines}) == len(grid)
    assert loss.get_ylim()[0] == 0


def test_weight_templates_show_the_shapes_of_the_digits(held_out):
    """Red where a pixel's weight is for the digit, blue where against: the 0 template is the most against
    ink in the middle of the frame (its hole); the 1 wants ink there."""
    drawn = weights_picture(held_out.model)
    templates = tiles(drawn, 5)
    model = held_out.model
    weights = (model.linear.weight[:, :SIDE * SIDE] / model.std[:SIDE * SIDE]).detach().view(10, SIDE, SIDE)
    np.testing.assert_allclose(templates, weights.numpy(), rtol=1e-6)
    centre = templates[:, 10:18, 12:16].mean((1, 2))
    assert centre.argmin() == 0 and centre[1] > 0
    assert titles(drawn) == [f"digit {d}" for d in range(10)]
    pixels = png(drawn)
    reddish = ((pixels[..., 0] - pixels[..., 2]) > 60).sum()
    bluish = ((pixels[..., 2] - pixels[..., 0]) > 60).sum()
    assert reddish > 2000 and bluish > 2000  # both signs drawn, each over much of the ten


def test_errors_picture_holds_the_most_confidently_wrong_validation_images(held_out, sample):
    labels = sample.train_labels[held_out.validated]
    images = sample.train_images[held_out.validated]
    drawn = mistakes_picture(images, labels, held_out.probabilities)
    confidence, predicted = held_out.probabilities.max(1)
    wrong = [i for i in range(len(labels)) if predicted[i] != labels[i]]
    chosen = sorted(wrong, key=lambda i: -confidence[i].item())[:24]
    assert 0 < len(wrong) and titles(drawn) == [f"{labels[i]} -> {predicted[i]} ({confidence[i]:.2f})" for i in chosen]
    assert f"of {len(wrong)} mistakes on {len(labels)} validation images" in drawn.figure.texts[0].get_text()
    np.testing.assert_allclose(tiles(drawn, 8)[:len(chosen)], images[chosen].reshape(-1, SIDE, SIDE) / 255)


def test_errors_are_ordered_by_the_probability_of_the_wrong_answer():
    labels = np.array([0, 1, 2, 3, 4])
    probabilities = torch.full((5, 10), 0.01)
    for i, (guess, p) in enumerate([(0, 0.99), (7, 0.6), (2, 0.5), (8, 0.9), (9, 0.7)]):
        probabilities[i, guess] = p
    images = np.arange(5, dtype=np.uint8)[:, None].repeat(784, 1)  # image i is all grey level i
    drawn = mistakes_picture(images, labels, probabilities)
    assert titles(drawn) == ["3 -> 8 (0.90)", "4 -> 9 (0.70)", "1 -> 7 (0.60)"]
    assert [round(255 * tile.mean()) for tile in tiles(drawn, 8)[:3]] == [3, 4, 1]
    assert titles(mistakes_picture(images, labels, probabilities, count=2)) == ["3 -> 8 (0.90)", "4 -> 9 (0.70)"]


def test_a_run_without_a_mistake_still_gets_its_errors_picture():
    probabilities = torch.zeros(3, 10)
    probabilities[:, 1] = 1
    drawn = mistakes_picture(np.zeros((3, 784), np.uint8), np.array([1, 1, 1]), probabilities)
    assert titles(drawn) == ["no mistakes"] and png(drawn).shape[0] > 50


def test_confusion_picture_shades_mistakes_only_and_writes_every_count():
    counts = np.diag(np.full(10, 40))
    counts[4, 4], counts[4, 6] = 37, 3
    scores = kernel.Scores(397 / 400, 0.1, 400, [0.925 if d == 4 else 1.0 for d in range(10)], counts.tolist())
    drawn = confusion_picture(scores)
    axes = drawn.figure.axes[0]
    shaded = np.asarray(axes.images[0].get_array())
    assert shaded[4, 6] == 3 and shaded.sum() == 3  # only the mistakes are shaded; the diagonal is not
    written = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in axes.texts}
    assert written[(4, 4)] == "37" and written[(4, 6)] == "3" and written[(0, 0)] == "40" and (4, 5) not in written
    assert [t.get_text() for t in axes.get_yticklabels()][4] == "4  (92.5%)"
    assert "397 of 400 correct" in axes.get_title()


def test_features_picture_shows_digits_through_every_rung(sample):
    """features.png: five rows of 11 tiles: raw, deskewed, normalised, then the 8 direction planes."""
    pixels = sample.train_images[:5]
    drawn = features_picture(pixels, "orientations")
    assert titles(drawn)[:11] == ["raw", "deskewed", "normalised"] + [f"{45 * k} deg" for k in range(8)]
    grid = tiles(drawn, 11).reshape(5, 11, SIDE, SIDE)
    np.testing.assert_allclose(grid[:, 0], pixels.reshape(5, SIDE, SIDE) / 255, atol=1e-6)
    normalised = image_features(torch.from_numpy(pixels), "orientations")[:, :SIDE * SIDE].view(5, SIDE, SIDE)
    np.testing.assert_allclose(grid[:, 2], normalised.clamp(0, 1).numpy(), atol=1e-6)
    assert (grid[:, 3:].reshape(5, -1).max(1) == 1).all()  # each digit's planes on its own scale
    assert "This run feeds: orientations" in drawn.figure.texts[0].get_text()


def test_a_picture_that_cannot_be_written_is_reported_not_raised(tmp_path, sample, capsys):
    """The run keeps what was written; the failure is on stderr and in metrics.json."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "errors.png").mkdir()  # nothing can be renamed onto a folder
    record = kernel.run(Config(), sample, out)
    assert record.pictures == ["weights.png"] and "errors.png" in record.pictures_error
    assert "warning: could not write the run's pictures" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["pictures"] == ["weights.png"]
    assert (out / "submission.csv").is_file() and png(out / "weights.png").shape[0] > 100


def test_the_data_picture_labels_each_digit(sample):
    drawn = kernel.digits_picture(sample, count=20)
    assert titles(drawn) == [f"label {label}" for label in sample.train_labels[:20]]
    np.testing.assert_allclose(tiles(drawn, 10), sample.train_images[:20].reshape(-1, SIDE, SIDE) / 255)


def test_the_cv_folds_used_by_the_chart_are_the_runs_own(auto, sample):
    """The chart's numbers are the CV's: the chosen strength's mean over the folds."""
    chosen = [g for g in auto.cv.grid if g["penalty"] == auto.cv.penalty]
    assert len(chosen) == 1 and chosen[0]["accuracy"] == pytest.approx(np.mean(auto.cv.fold_accuracies))
    sizes = [len(val) for _, val in stratified_folds(sample.train_labels[:1500], 3, 0)]
    assert [round(a * n) / n for a, n in zip(auto.cv.fold_accuracies, sizes)] == \
        pytest.approx(auto.cv.fold_accuracies, abs=1e-12)
    assert validation_scores(sample.train_labels[:1500][auto.validated], auto.probabilities).images == 1500
