"""K-fold cross-validation: the folds, the batched fits, the one model out, and the run as a user sees it."""
import json
import re

import numpy as np
import pytest
import torch

from conftest import run_cli
from digit_recognizer.kernel import (Config, Folds, Penalty, UserError, cross_validate, fit_to_optimum, image_features,
                                     minimise, standardiser, stratified_folds)
from digit_recognizer.local_data import load_data


@pytest.fixture(scope="module")
def sample():
    data = load_data(None)
    return torch.from_numpy(data.train_images[:1500]), torch.from_numpy(data.train_labels[:1500])


def test_folds_are_stratified_disjoint_complete_and_seeded():
    labels = load_data(None).train_labels
    splits = stratified_folds(labels, 5, seed=3)
    fold_of = np.full(len(labels), -1)
    for f, (train, val) in enumerate(splits):
        assert (fold_of[val] == -1).all()  # in no other fold's validation
        fold_of[val] = f
        assert np.array_equal(train, np.setdiff1d(np.arange(len(labels)), val))  # trains on all the rest
    assert sorted(set(fold_of.tolist())) == [0, 1, 2, 3, 4]  # every example in exactly one fold
    sizes = np.bincount(fold_of)
    assert sizes.max() - sizes.min() <= 1
    for digit in range(10):
        per_fold = np.bincount(fold_of[labels == digit], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1  # each digit spread evenly
    assert all(np.array_equal(v, w) for (_, v), (_, w) in zip(splits, stratified_folds(labels, 5, seed=3)))
    assert not np.array_equal(splits[0][1], stratified_folds(labels, 5, seed=4)[0][1])
    with pytest.raises(UserError, match="folds 5: digit 3 has only 4 examples"):  # asked before any fold is made
        stratified_folds(np.array([d for d in range(10) for _ in range(4 if d == 3 else 9)]), 5, seed=0)


def fold_data(pixels, labels, folds=3, seed=0, rung="deskew"):
    prepared = image_features(pixels, rung)
    splits = stratified_folds(labels.numpy(), folds, seed)
    return prepared, splits, Folds(rung, prepared, labels, splits)


def test_each_fold_standardiser_sees_only_its_training_part(sample):
    prepared, splits, folds = fold_data(*sample)
    for f, (train, val) in enumerate(splits):
        torch.testing.assert_close(folds.mean[f], prepared[train].mean(0))
        assert not torch.allclose(folds.mean[f], prepared.mean(0), atol=1e-4)
        assert set(folds.train[f].tolist()) == set(train.tolist())
        assert set(folds.val[f][folds.val_mask[f]].tolist()) == set(val.tolist())


def test_batched_strengths_train_independently(sample):
    """Each strength's block of weights reaches its own optimum as if alone: batching folds x strengths changes
    no result beyond the optimiser's tolerance. (The batched products sum in another order, so the iterates
    differ in their last bits and both stop within a gradient of 1e-4 of one optimum: the same model up to
    that tolerance: its held-out probabilities within a few thousandths, its predictions the same.)"""
    _, _, folds = fold_data(*sample)
    both = fit_to_optimum(folds, [Penalty(fixed=1e-3), Penalty(fixed=1e-1)], "both")
    alone = fit_to_optimum(folds, [Penalty(fixed=1e-1)], "alone")
    batched = folds.scores(both.weight[..., 10:], both.bias[..., 10:])[0].softmax(-1)
    single = folds.scores(alone.weight, alone.bias)[0].softmax(-1)
    torch.testing.assert_close(batched, single, rtol=0, atol=5e-3)
    assert (batched.argmax(-1) == single.argmax(-1)).float().mean() >= 0.998
    torch.testing.assert_close(both.weight[..., 10:], alone.weight, rtol=0, atol=2e-3)
    assert (both.weight[..., :10] - alone.weight).abs().max() > 0.05  # the strengths do differ, far beyond that


def test_auto_weight_decay_picks_the_best_mean_accuracy(sample):
    pixels, labels = sample
    config = Config(folds=3, weight_decay="auto", features="deskew")
    splits = stratified_folds(labels.numpy(), 3, config.seed)
    summary = cross_validate(config, image_features(pixels, "deskew"), labels, splits).cv
    grid = summary.grid
    accuracies = [g["accuracy"] for g in grid]
    chosen = accuracies.index(max(accuracies))  # the first of equals: the weaker strength
    assert summary.penalty == grid[chosen]["penalty"] and summary.accuracy == accuracies[chosen]
    # The refit's weight decay is the chosen C's for all 1,500 images; each fold's, for its own 1,000.
    assert summary.weight_decay == pytest.approx(1 / (grid[chosen]["c"] * len(labels)))
    assert grid[chosen]["weight_decay"] == pytest.approx(1 / (grid[chosen]["c"] * 1000), rel=1e-3)
    assert [g["c"] for g in grid] == [1.0, 0.32, 0.1, 0.032, 0.01]  # the weakest penalty first
    assert min(accuracies) < max(accuracies), grid  # a real choice: a wrong pick would show
    assert (summary.edge is not None) == (chosen in (0, len(grid) - 1))
    # The grid's numbers are held-out accuracies: each fold's is a whole count of its own held-out images,
    # and the chosen strength's grid entry is the mean over the folds.
    sizes = [len(val) for _, val in splits]
    assert len(summary.fold_accuracies) == 3
    for accuracy, size in zip(summary.fold_accuracies, sizes):
        assert accuracy * size == pytest.approx(round(accuracy * size), abs=1e-9) and 0.8 < accuracy < 1.0
    assert summary.accuracy == pytest.approx(np.mean(summary.fold_accuracies), abs=1e-12)


def test_train_with_folds_reports_the_estimate_and_the_test_score_falls_inside_it(tmp_path):
    result = run_cli("train", "--out", str(tmp_path / "runs"), "--folds", "5")
    assert result.returncode == 0, result.stderr
    found = re.search(r"expected public score (0\.\d{4}) ± (0\.\d{4}) \(5-fold CV\)", result.stdout)
    assert found, result.stdout
    [run] = (tmp_path / "runs").iterdir()
    cv = json.loads((run / "metrics.json").read_text())["cv"]
    assert {"folds", "accuracy", "stderr", "fold_accuracies", "weight_decay", "grid"} <= set(cv)
    assert (found[1], found[2]) == (f"{cv['accuracy']:.4f}", f"{cv['stderr']:.4f}")
    assert cv["folds"] == 5 and len(cv["fold_accuracies"]) == 5
    assert cv["accuracy"] == pytest.approx(np.mean(cv["fold_accuracies"]))
    assert cv["stderr"] == pytest.approx(np.std(cv["fold_accuracies"], ddof=1) / np.sqrt(5))
    scored = run_cli("score", str(run / "submission.csv"))
    test_accuracy = float(scored.stdout.split()[1])
    # Two estimates of one accuracy, each with its own error: the CV's, and the 1,000 test images' binomial one.
    test_stderr = np.sqrt(test_accuracy * (1 - test_accuracy) / 1000)
    assert abs(test_accuracy - cv["accuracy"]) <= 2 * np.hypot(cv["stderr"], test_stderr), (test_accuracy, cv)
    # The saved model is the one the submission came from.
    predicted = run_cli("predict", "--model", str(run / "model.pt"), "--out", str(tmp_path / "again.csv"))
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "again.csv").read_bytes() == (run / "submission.csv").read_bytes()


def test_train_with_folds_submits_the_refit_model_and_says_refit_is_moot(tmp_path):
    result = run_cli("train", "--runs", str(tmp_path / "runs"), "--folds", "3", "--refit", "--val-fraction", "0.2")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["note: --val-fraction 0.2 and --refit do not apply with folds and are "
                                          "ignored: every training image is validated once, by the folds, and the "
                                          "model submitted is always the refit on all of train.csv"]
    [run] = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    cv = metrics["cv"]
    assert cv["folds"] == 3 and metrics["refit"] == {"examples": 4000}
    assert metrics["settings_changed"] == {"folds": 3}  # the settings it ignored are no difference
    assert f"predictions from the refit to the optimum on all 4000 training images at {cv['penalty']} (weight decay " \
           f"{cv['weight_decay']:.3g})" in result.stdout and cv["penalty"] == "C = 0.1"
    assert cv["weight_decay"] == pytest.approx(1 / (0.1 * 4000))  # the refit's own size
    assert "refit: fitting the model to the optimum by L-BFGS" in result.stdout
    predicted = run_cli("predict", "--model", str(run / "model.pt"), "--out", str(tmp_path / "again.csv"))
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "again.csv").read_bytes() == (run / "submission.csv").read_bytes()
    scored = run_cli("score", str(run / "submission.csv"))
    assert scored.returncode == 0 and float(scored.stdout.split()[1]) > 0.97, scored.stdout


def test_lbfgs_solves_each_batched_problem_as_if_alone():
    """Independent quadratics of different conditioning, one per model: each reaches its own minimiser."""
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(3, 20, 20, generator=generator, dtype=torch.float64))[0]
    spectra = torch.stack([torch.logspace(0, k, 20, dtype=torch.float64) for k in (0.5, 1.5, 2)])
    hessians = basis @ torch.diag_embed(spectra) @ basis.transpose(1, 2)  # (3 models, 20, 20)
    targets = torch.randn(3, 20, 1, generator=generator, dtype=torch.float64)

    asked = []  # which of the models each call of the objective was asked to compute

    def objective(x, active):
        grad = hessians @ x - targets
        return (0.5 * (x * (hessians @ x)).sum((1, 2)) - (targets * x).sum((1, 2))), grad

    def recorded(x, active):
        asked.append(active.flatten().tolist())
        return objective(x, active)

    # 1e-7: the smallest gradient these objectives (about -5) can still certify in float64; below it the value
    # stops falling, and a model stopped there is reported as stalled, not converged.
    last = list(minimise(recorded, torch.zeros(3, 20, 1, dtype=torch.float64), (1, 2), 500, 1e-7))[-1]
    torch.testing.assert_close(last.x, torch.linalg.solve(hessians, targets), rtol=1e-6, atol=1e-6)
    assert last.moving == 0 and last.largest_gradient <= 1e-7
    alone = list(minimise(lambda x, active: tuple(v[:1] for v in objective(x.expand(3, -1, -1), active)),
                          torch.zeros(1, 20, 1, dtype=torch.float64), (1, 2), 500, 1e-7))[-1]
    assert alone.iteration < last.iteration  # the best-conditioned one stops first; its iterates are its own
    torch.testing.assert_close(alone.x, last.x[:1], rtol=1e-9, atol=1e-9)
    # A converged model is dropped from the batch: asked for until it converges, never after.
    for m in range(3):
        column = [a[m] for a in asked]
        assert column == sorted(column, reverse=True), m
    assert sum(a[0] for a in asked) < sum(a[2] for a in asked)  # the best-conditioned one left first
    assert not asked[-1][0] and asked[-1][2]


def penalised_gradient(features, labels, weight, bias, decay):
    """Gradient of mean cross-entropy + decay/2 |W|^2 (W on standardised features), by autograd."""
    weight, bias = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(features @ weight + bias, labels) + decay / 2 * weight.square().sum()
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, (weight, bias))])


def test_auto_fits_every_fold_and_strength_to_its_optimum(sample):
    """Convex loss: a vanishing gradient of the penalised objective certifies each batched model's optimum."""
    prepared, splits, folds = fold_data(*sample)
    result = fit_to_optimum(folds, [Penalty(fixed=1e-3), Penalty(c=0.1)], "auto")
    decays = result.weight_decays[0]
    assert decays[1] == pytest.approx(1 / (0.1 * len(splits[0][0])), rel=1e-3)  # C follows the fold's size
    weight, bias, history = result.weight, result.bias, result.history
    assert result.converged and result.largest_gradient <= 1e-4
    for f in range(3):
        rows = folds.train[f][folds.train_mask[f]]
        features = (prepared[rows] - folds.mean[f]) / folds.std[f]
        for s, decay in enumerate(result.weight_decays[f]):
            block = slice(10 * s, 10 * s + 10)
            grad = penalised_gradient(features, sample[1].long()[rows], weight[f][:, block], bias[f][0, block], decay)
            assert grad.abs().max() < 2e-4, (f, decay)
    assert history[-1]["iteration"] > 1  # L-BFGS iterations


def test_auto_refit_is_the_optimum_on_all_the_training_images(sample):
    pixels, labels = sample
    config = Config(folds=3, weight_decay="auto")  # no refit: with folds the submitted model is the refit
    prepared = image_features(pixels, config.features)
    trained = cross_validate(config, prepared, labels, stratified_folds(labels.numpy(), 3, config.seed))
    model, decay = trained.model, trained.cv.weight_decay
    assert trained.refit_images == len(labels) and trained.weight_decay == decay
    torch.testing.assert_close(model.mean, prepared.mean(0))  # standardised on every training image
    with torch.no_grad():
        features = model.standardised(image_features(pixels, model.features))
    grad = penalised_gradient(features, labels.long(), model.linear.weight.T, model.linear.bias, decay)
    assert grad.abs().max() < 2e-4


def test_a_problem_that_cannot_reach_the_tolerance_stops_and_says_so(tmp_path):
    """A degenerate train.csv (every image the same, so nothing tells the digits apart): the objective stops
    falling short of the tolerance; the fit stops within a bounded number of iterations and the run says,
    in the summary and in metrics.json, that the model is NOT at the optimum, with its largest gradient."""
    sample = load_data(None)
    data = tmp_path / "data"
    data.mkdir()
    image = ",".join(map(str, sample.train_images[0]))
    (data / "train.csv").write_text("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n" +
                                    "".join(f"{i % 10},{image}\n" for i in range(400)))
    (data / "test.csv").write_text(",".join(f"pixel{i}" for i in range(784)) + "\n" + f"{image}\n")
    result = run_cli("train", "--data", str(data), "--runs", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    [run] = (tmp_path / "runs").iterdir()
    fit = json.loads((run / "metrics.json").read_text())["fit"]
    assert not fit["converged"] and fit["largest_gradient"] > 1e-3 and fit["iterations"] < 100, fit
    assert "the hold-out fit: NOT at the optimum: stopped because the objective no longer fell at float32's " \
           f"precision after {fit['iterations']} iterations, largest gradient entry {fit['largest_gradient']:.2e}" \
           in result.stdout
