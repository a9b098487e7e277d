"""K-fold cross-validation as one batched tensor program: every fold and every L2 strength at once.

Each fold's examples are gathered by index from one tensor of deskewed images and standardised with
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
from .lbfgs import minimise
from .model import N_CLASSES, N_PIXELS, SoftmaxRegression
from .optimizer import make_optimizer
from .split import stratified_folds
from .train import Batches, Progress, check_finite, fit, learning_rate


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
        prepared = SoftmaxRegression(cfg.deskew).prepare(pixels)
    folds = FoldData(prepared, targets, fold_of, cfg.folds, cfg.seed)
    optimum = cfg.weight_decay == "auto"
    weight, bias, history = (fit_folds_to_optimum if optimum else fit_folds)(cfg, folds, decays)
    with torch.no_grad():
        logits = folds.val_logits(weight, bias)  # (folds, v, strengths, 10)
        accuracy = folds.val_accuracy(logits)  # (folds, strengths)
    mean = accuracy.mean(0)
    stderr = accuracy.std(0) / math.sqrt(cfg.folds)
    chosen = int(torch.argmax(mean))  # the first of equals: the grid runs from weak to strong
    fold_accuracies = accuracy[:, chosen].tolist()
    chosen_cfg = replace(cfg, weight_decay=decays[chosen])
    if optimum:
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
        model = folds.averaged_model(cfg.deskew, weight.view(blocks)[:, :, chosen],
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
                 seed: int):
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
        self.mean, self.std = fold_standardisers(prepared, fold_of, folds)
        # Which rows of self.train are a fold's own examples and not the padding's repeats.
        self.train_mask = torch.arange(self.train.shape[1], device=device) < self.n_train[:, None]

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Prepared images (folds, b, 784) of the examples rows (folds, b)."""
        return self.prepared.index_select(0, rows.flatten()).view(*rows.shape, N_PIXELS)

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

    def averaged_model(self, use_deskew: bool, weight: torch.Tensor, bias: torch.Tensor) -> SoftmaxRegression:
        """One softmax regression whose logits are the mean of the fold models' logits, on raw prepared
        pixels.

        Fold f computes W_f (x - m_f) / s_f + b_f: linear in x, so the average is again linear, and
        it is written back in terms of a standardiser fitted on all the training examples.
        """
        model = SoftmaxRegression(use_deskew).to(self.prepared.device)
        with torch.no_grad():
            model.fit_standardizer(self.prepared)
            raw = weight.transpose(1, 2) / self.std  # (folds, 10, 784): weights on prepared pixels
            raw_bias = bias[:, 0, :] - torch.einsum("fkp,fp->fk", raw, self.mean)
            mean_weight, mean_bias = raw.mean(0), raw_bias.mean(0)
            model.linear.weight.copy_(mean_weight * model.std)
            model.linear.bias.copy_(mean_bias + mean_weight @ model.mean)
        return model


def standardised_logits(batch: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                        std: torch.Tensor) -> torch.Tensor:
    """W (x - m) / s + b for batch (folds, b, 784), weight (folds, 784, k), mean (folds, 784), std
    (folds, 1, 1)."""
    scaled = weight / std
    shifted = bias - torch.bmm(mean[:, None, :], scaled)
    return torch.baddbmm(shifted, batch, scaled)


def pad(index: torch.Tensor, length: int) -> torch.Tensor:
    return torch.cat([index, index[:length - len(index)]])


def fold_standardisers(prepared: torch.Tensor, fold_of: torch.Tensor,
                       folds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each fold's standardiser (as SoftmaxRegression.fit_standardizer), fitted on its training part only.

    A fold's training part is everything but its held-out part, so its sums are the totals minus
    the held-out sums: one pass over the data for all folds, no copy of any training part.
    """
    held_sum = torch.zeros(folds, N_PIXELS, device=prepared.device).index_add_(0, fold_of, prepared)
    held_square = torch.zeros(folds, device=prepared.device).index_add_(0, fold_of, prepared.square().sum(1))
    count = (len(fold_of) - torch.bincount(fold_of, minlength=folds)).to(prepared.dtype)[:, None]
    mean = (prepared.sum(0) - held_sum) / count  # (folds, 784)
    mean_square = (held_square.sum() - held_square)[:, None] / (count * N_PIXELS)
    std = (mean_square - mean.square().mean(1, keepdim=True)).clamp_min(1e-12).sqrt()
    return mean, std.view(folds, 1, 1)


def fit_folds(cfg: Config, folds: FoldData,
              decays: list[float]) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Train folds x strengths softmax regressions at once; weight (folds, 784, strengths*10), bias
    (folds, 1, strengths*10)."""
    device, n_models = folds.prepared.device, len(decays) * N_CLASSES
    torch.manual_seed(cfg.seed)
    weight = torch.zeros(folds.folds, N_PIXELS, n_models, device=device, requires_grad=True)
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


# Stop when every model's largest gradient entry is this small: scikit-learn's lbfgs default, on the
# same mean-loss-plus-penalty scale, so both stop at the same distance from the optimum.
OPTIMUM_TOL = 1e-4
MAX_ITER = 1000  # scikit-learn's cap in benchmarks/compare.py; the sample needs a few hundred


def fit_folds_to_optimum(cfg: Config, folds: FoldData,
                         decays: list[float]) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """The optimum of each fold's penalised loss at each strength, by one batched full-batch L-BFGS.

    Same weight layout as fit_folds. Each strength is compared at its own optimum, so the choice
    depends on the data alone, not on how far a fixed number of epochs got at each strength.
    """
    weight, bias, iterations, value = optimum(folds.train_features, folds.train_targets, folds.train_mask,
                                              folds.mean, folds.std, decays)
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
    model = SoftmaxRegression(cfg.deskew).to(prepared.device)
    with torch.no_grad():
        model.fit_standardizer(prepared)
    mask = torch.ones(1, len(targets), dtype=torch.bool, device=prepared.device)
    weight, bias, _, _ = optimum(prepared[None], targets[None], mask, model.mean[None],
                                 model.std[:1].view(1, 1, 1), [decay])
    with torch.no_grad():
        model.linear.weight.copy_(weight[0].T)
        model.linear.bias.copy_(bias[0, 0])
    return model


def optimum(features: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor,
            std: torch.Tensor, decays: list[float]) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Minimise mean cross-entropy + decay/2 |W|^2 (W on standardised features) for every fold x strength.

    features (folds, n, 784), targets and mask (folds, n), mean (folds, 784), std (folds, 1, 1).
    Returns weight (folds, 784, strengths*10), bias (folds, 1, strengths*10), the iterations and
    each model's objective (folds, strengths).
    """
    n_folds, n, strengths = features.shape[0], features.shape[1], len(decays)
    decay = torch.tensor(decays, device=features.device).view(1, strengths, 1)
    count = mask.sum(1).to(features.dtype)[:, None]  # (folds, 1)
    expanded = targets[..., None].expand(-1, -1, strengths).reshape(-1)
    weights = mask.to(features.dtype)[..., None]  # (folds, n, 1): padding rows count zero

    def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            weight = x[:, :N_PIXELS].reshape(n_folds, N_PIXELS, -1)
            bias = x[:, N_PIXELS:].reshape(n_folds, 1, -1)
            logits = standardised_logits(features, weight, bias, mean, std)
            losses = F.cross_entropy(logits.reshape(-1, N_CLASSES), expanded,
                                     reduction="none").view(n_folds, n, strengths)
            penalty = x[:, :N_PIXELS].square().sum((1, 3))  # (folds, strengths)
            value = (losses * weights).sum(1) / count + decay[..., 0] / 2 * penalty
            grad, = torch.autograd.grad(value.sum(), x)
        return value.detach(), grad

    # One model's parameters: its 784 weight rows and its bias row (dim 1) by its 10 classes (dim 3).
    x = torch.zeros(n_folds, N_PIXELS + 1, strengths, N_CLASSES, device=features.device)
    x, iterations, value = minimise(objective, x, (1, 3), MAX_ITER, OPTIMUM_TOL)
    weight = x[:, :N_PIXELS].reshape(n_folds, N_PIXELS, -1).contiguous()
    bias = x[:, N_PIXELS:].reshape(n_folds, 1, -1).contiguous()
    return weight, bias, iterations, value.view(n_folds, strengths)
