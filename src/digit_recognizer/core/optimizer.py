"""Epochs of Adam or SGD (`--optimizer adam`, `sgd`); every fit's scores and progress.

The hold-out keeps its best epoch and stops once `patience` epochs bring nothing better, as big data
peaks within a few epochs (CV folds run every epoch). The updates are written out, as torch.optim
imports torch._dynamo on its first step (about a second, more than a fit on the sample); they are
torch's single-tensor Adam and Nesterov SGD, step for step, one weight decay per strength.
"""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm  # a bar only in a terminal, where tqdm.auto is this one

from .config import Config
from .errors import UserError
from .model import N_CLASSES

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
