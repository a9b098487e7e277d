"""K-fold cross-validation as one batched tensor program: every fold and every L2 strength at once.

Each fold's examples are gathered by index from one tensor of image features and standardised with
that fold's own training statistics; one batched matmul then scores a batch under every fold's
weights, and each fold's weights hold one 10-column block per strength, so folds x strengths
models train in the step a single model would take. The fits run every epoch (no early stopping:
the held-out fold must not choose anything it then scores), and the held-out accuracy after the
last epoch is the fold's estimate of the public score. Their mean ± its standard error is the CV
estimate printed last: the public score should fall within about two standard errors of it.
With `--weight-decay auto` the same batched
models are instead fitted to the optimum of their convex penalised loss by full-batch L-BFGS
(core/lbfgs.py), so strengths are compared at their optima, and the optimum on all the
training images at the chosen strength is the model submitted (with or without `--refit`).
"""
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from .config import WEIGHT_DECAY_GRID, Config
from .lbfgs import optimum
from .features import feature_blocks
from .model import N_CLASSES, SoftmaxRegression
from .optimizer import make_optimizer
from .split import stratified_folds
from .train import Batches, OptimumProgress, Progress, check_finite, fit, learning_rate, set_to_optimum


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
