"""The feature ladder, rung by rung, on synthetic strokes whose answer is known, and on the sample."""
import numpy as np
import pytest
import torch

from digit_recognizer.kernel import (BLUR_SIGMA, CHUNK, DIRECTIONS, FEATURE_RUNGS, N_PIXELS, POOLED, SIDE, SIZE, Folds,
                                     Penalty, blur, feature_blocks, feature_count, fit_to_optimum, image_features,
                                     orientation_planes, standardiser, stratified_folds, upright)
from digit_recognizer.local_data import load_data


def moments(image: torch.Tensor) -> dict:
    """Centre of mass, slant cov(x, y) / var(y) and vertical standard deviation of one 28x28 image."""
    coords = torch.arange(SIDE, dtype=image.dtype)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    mass = image.sum()
    cx, cy = (image * x).sum() / mass, (image * y).sum() / mass
    var_y = (image * (y - cy).square()).sum() / mass
    slant = (image * (x - cx) * (y - cy)).sum() / mass / var_y
    return {"cx": float(cx), "cy": float(cy), "slant": float(slant), "sd_y": float(var_y.sqrt())}


def sheared_bar(slant: float, x0: float, y0: float, height: int = 16) -> torch.Tensor:
    """A bar about 3 pixels wide (ink in [0, 1]), `height` rows tall, leaning by `slant` columns per row, centred near (x0, y0)."""
    image = torch.zeros(SIDE, SIDE)
    for row in range(int(y0) - height // 2, int(y0) + height // 2):
        centre = x0 + slant * (row - y0)
        for col in range(SIDE):
            image[row, col] = min(1.0, max(0.0, 2.0 - abs(col - centre)))
    return image


def as_pixels(images: torch.Tensor) -> torch.Tensor:
    return (images.reshape(len(images), -1) * 255).round().to(torch.uint8)


def rung_image(image: torch.Tensor, rung: str) -> torch.Tensor:
    """The 28x28 pixel block of one image's features under a rung."""
    return image_features(as_pixels(image[None]), rung)[0, :N_PIXELS].view(SIDE, SIDE)


def test_deskew_makes_a_sheared_off_centre_bar_upright_and_centred():
    bar = sheared_bar(slant=0.4, x0=9.0, y0=17.0)
    before = moments(bar)
    assert abs(before["slant"] - 0.4) < 0.05 and abs(before["cx"] - 9) < 0.5  # the input is what we think
    after = moments(rung_image(bar, "deskew"))
    centre = (SIDE - 1) / 2
    assert abs(after["slant"]) < 0.03, after
    assert abs(after["cx"] - centre) < 0.3 and abs(after["cy"] - centre) < 0.3, after
    assert after["sd_y"] == pytest.approx(before["sd_y"], rel=0.03)  # deskewing alone keeps the size
    assert float(rung_image(bar, "deskew").sum()) == pytest.approx(float(bar.sum()), rel=0.02)  # nothing lost


@pytest.mark.parametrize("height", [8, 12, 20])
def test_normalised_bars_come_out_upright_centred_and_of_one_height(height):
    bar = sheared_bar(slant=-0.3, x0=16.0, y0=12.0, height=height)
    unblurred = moments(upright(bar[None, None], SIZE)[0, 0])
    assert abs(unblurred["slant"]) < 0.03 and unblurred["sd_y"] == pytest.approx(SIZE, rel=0.03), unblurred
    after = moments(rung_image(bar, "normalised"))
    centre = (SIDE - 1) / 2
    assert abs(after["slant"]) < 0.03 and abs(after["cx"] - centre) < 0.3 and abs(after["cy"] - centre) < 0.3
    # The blur (sigma 1 px) adds its own variance to the normalised spread.
    assert after["sd_y"] == pytest.approx((SIZE**2 + 1.0) ** 0.5, rel=0.03), after


def test_the_blur_spreads_a_dot_as_a_gaussian_of_sigma_one_and_keeps_its_ink():
    dot = torch.zeros(1, 1, SIDE, SIDE)
    dot[0, 0, 13, 13] = 1.0
    blurred = blur(dot)[0, 0]
    assert float(blurred.sum()) == pytest.approx(1.0, rel=1e-5)
    spread = moments(blurred)
    assert (spread["cx"], spread["cy"]) == (pytest.approx(13.0, abs=1e-4), pytest.approx(13.0, abs=1e-4))
    assert spread["sd_y"] == pytest.approx(BLUR_SIGMA, rel=0.03)  # cut at 3 sigma: a little under 1


def energy_by_direction(image: torch.Tensor) -> torch.Tensor:
    """Each direction's share of the gradient energy in the central 3 x 3 pooled cells (away from stroke ends and edges)."""
    planes = orientation_planes(image[None, None])
    assert planes.shape == (1, DIRECTIONS, POOLED, POOLED)
    energy = planes[..., 2:5, 2:5].sum((0, 2, 3))
    return energy / energy.sum()


def test_a_vertical_stroke_puts_its_energy_in_the_horizontal_gradient_planes():
    stroke = sheared_bar(slant=0.0, x0=13.5, y0=14.0, height=24)
    energy = energy_by_direction(stroke)
    # A vertical stroke's gradient points along x: rightwards on its left edge (direction 0, 0 degrees)
    # and leftwards on its right edge (direction 4, 180 degrees), in equal measure.
    assert float(energy[0] + energy[4]) > 0.95, energy
    assert float(energy[0]) == pytest.approx(float(energy[4]), rel=0.05)
    # Turned a quarter, it is a horizontal stroke: then the vertical-gradient planes (90, 270 degrees) hold it.
    turned = energy_by_direction(stroke.T.contiguous())
    assert float(turned[2] + turned[6]) > 0.95, turned


def test_a_gradient_between_two_directions_is_shared_between_them():
    # A ramp rising along x and y alike: its gradient points at 45 degrees, direction 1 exactly.
    coords = torch.arange(SIDE, dtype=torch.float32)
    ramp = (coords[None, :] + coords[:, None]) / (2 * SIDE)
    energy = energy_by_direction(ramp)
    assert float(energy[1]) > 0.95, energy
    # At 22.5 degrees (tan = 0.414), half way between directions 0 and 1, each gets about half.
    tilted = (coords[None, :] + 0.41421356 * coords[:, None]) / (2 * SIDE)
    energy = energy_by_direction(tilted)
    assert float(energy[0] + energy[1]) > 0.95 and float(energy[0]) == pytest.approx(float(energy[1]), rel=0.1), energy


@pytest.mark.parametrize("rung", FEATURE_RUNGS)
def test_an_images_features_do_not_depend_on_the_rest_of_its_batch(rung):
    data = load_data(None)
    batch = torch.from_numpy(data.train_images[:CHUNK + 300])  # more than a chunk: the chunking is crossed too
    together = image_features(batch, rung)
    assert together.shape == (len(batch), feature_count(rung))
    for i in (0, 7, CHUNK - 1, CHUNK, CHUNK + 299):
        alone = image_features(batch[i:i + 1], rung)
        # Equal up to the last bits a matrix product's blocking may move: no other image took part.
        torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-5)
    shuffled = image_features(batch.flip(0), rung).flip(0)
    torch.testing.assert_close(shuffled, together, rtol=1e-5, atol=1e-5)


def test_the_ladder_has_the_sizes_and_blocks_it_promises():
    assert [feature_count(r) for r in FEATURE_RUNGS] == [784, 784, 784, 784 + 8 * 7 * 7, 784 + 8 * 7 * 7]
    assert feature_blocks("orientations") == feature_blocks("sqrt-orientations") == [slice(0, 784), slice(784, 1176)]
    assert feature_blocks("deskew") == [slice(0, 784)]
    pixels = as_pixels(sheared_bar(0.2, 12.0, 13.0)[None])
    assert torch.equal(image_features(pixels, "pixels"), pixels.float() / 255)  # the first rung is the raw ink


def test_sqrt_orientations_are_the_square_roots_of_the_pooled_cells_and_the_pixels_unchanged():
    """The Hellinger map: each pooled cell's square root, so that a thick stroke's few large cells no
    longer outweigh the many small ones; the normalised pixels stay as they are."""
    data = load_data(None)
    pixels = torch.from_numpy(data.train_images[:50])
    plain, rooted = image_features(pixels, "orientations"), image_features(pixels, "sqrt-orientations")
    assert torch.equal(rooted[:, :N_PIXELS], plain[:, :N_PIXELS])
    assert (plain[:, N_PIXELS:] >= 0).all()  # sums of gradient magnitudes: a square root is defined
    torch.testing.assert_close(rooted[:, N_PIXELS:], plain[:, N_PIXELS:].sqrt())
    # The large cells shrink relative to the small: the planes' spread (max over mean) falls.
    spread = [(f[:, N_PIXELS:].amax(1) / f[:, N_PIXELS:].mean(1)).mean() for f in (plain, rooted)]
    assert spread[1] < spread[0] / 2


@pytest.mark.parametrize("rung", ["pixels", "orientations"])
def test_each_blocks_statistics_come_from_the_training_split_only(rung):
    data = load_data(None)
    pixels, labels = torch.from_numpy(data.train_images[:600]), torch.from_numpy(data.train_labels[:600])
    val_pixels = torch.full((50, 784), 255, dtype=torch.uint8)  # nothing like the training digits
    splits = [(np.arange(600), np.arange(600, 650))]
    folds = Folds(rung, image_features(torch.cat([pixels, val_pixels]), rung), torch.cat([labels, labels[:50]]), splits)
    fit = fit_to_optimum(folds, [Penalty(fixed=0.003)], "train")
    model = folds.model(fit.weight, fit.bias)
    prepared = image_features(pixels, rung)
    torch.testing.assert_close(model.mean, prepared.mean(0))
    for block in feature_blocks(rung):
        expected = (prepared[:, block] - prepared[:, block].mean(0)).square().mean().sqrt()
        assert torch.all(model.std[block] == model.std[block][0])  # one shared scale per block
        assert float(model.std[block][0]) == pytest.approx(float(expected), rel=1e-4)
    if rung == "orientations":
        assert float(model.std[0]) != pytest.approx(float(model.std[-1]), rel=0.05)  # two blocks, two scales
    both = image_features(torch.cat([pixels, val_pixels]), rung)
    assert not torch.allclose(model.mean, both.mean(0))  # the validation images would have moved it


def test_each_folds_block_scales_come_from_its_own_training_part():
    data = load_data(None)
    pixels, labels = torch.from_numpy(data.train_images[:900]), torch.from_numpy(data.train_labels[:900])
    prepared = image_features(pixels, "orientations")
    splits = stratified_folds(labels.numpy(), 3, 0)
    folds = Folds("orientations", prepared, labels, splits)
    for f, (train, _) in enumerate(splits):
        mean, std = standardiser(prepared[train], "orientations")
        torch.testing.assert_close(folds.mean[f], mean)
        torch.testing.assert_close(folds.std[f], std, rtol=1e-4, atol=0)
        assert not torch.allclose(folds.mean[f], prepared.mean(0), atol=1e-4)  # its own part, not all


def test_block_scale_is_the_std_about_each_features_own_mean():
    block = torch.tensor([[0.0, 10.0], [2.0, 14.0]])
    # About the column means (1, 12): deviations +-1 and +-2, so the shared std is sqrt((1+1+4+4)/4).
    mean, std = standardiser(block, "pixels")  # one block: every column
    assert mean.tolist() == [1.0, 12.0] and std.tolist() == pytest.approx([np.sqrt(2.5)] * 2, rel=1e-5)
