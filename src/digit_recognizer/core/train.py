"""Training: the whole dataset on the device, shuffled index slices, the best epoch kept.

The model kept is the one of the epoch with the best accuracy on a held-out split, stratified so that
each digit is held out in its own proportion (a skewed split would score a skewed mix of digits);
training stops once `patience` epochs bring nothing better, as big data peaks within a few epochs.
"""
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .errors import UserError
from .lbfgs import OPTIMUM_TOL, optimum
from .model import SoftmaxRegression
from .optimizer import Optimizer, make_optimizer


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here (no GPU, or a CPU-only torch); "
                        "use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() and cuda_starts() else "cpu"
    return torch.device(name)


def cuda_starts() -> bool:
    """Whether an attached GPU takes work: a broken driver must not cost a Kaggle run its submission."""
    try:
        torch.zeros(1, device="cuda").add_(1).item()
        return True
    except Exception as exc:  # noqa: BLE001  (RuntimeError, or AssertionError from a CPU-only build)
        print(f"warning: a GPU is attached but CUDA failed to start ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}); training on the CPU", file=sys.stderr)
        return False


@dataclass
class FitResult:
    model: SoftmaxRegression
    best_epoch: int  # 1-based; 0 when nothing was validated (refit)
    history: list[dict] = field(default_factory=list)  # per epoch: train and val loss and accuracy
    seconds: float = 0.0


def fit(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor, val_pixels: torch.Tensor | None = None,
        val_labels: torch.Tensor | None = None, epochs: int | None = None, desc: str = "train") -> FitResult:
    """Train a fresh model on device tensors; with validation data keep the best epoch's weights.

    With `--optimizer lbfgs` there are no epochs: the model is the optimum of its penalised loss.
    """
    if cfg.optimizer == "lbfgs":
        return fit_to_optimum(cfg, pixels, labels, val_pixels, val_labels, desc)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=pixels.device).manual_seed(cfg.seed)
    # One shuffle up front; every epoch then takes contiguous slices (views, not copies) in a new order.
    shuffled = torch.randperm(len(pixels), device=pixels.device, generator=generator)
    pixels, targets = pixels[shuffled], labels[shuffled].long()
    model = SoftmaxRegression(cfg.features).to(pixels.device)
    with torch.no_grad():
        prepared = model.prepare(pixels)
        model.fit_standardizer(prepared)
        features = model.standardize(prepared)
        val_features = model.features_of(val_pixels) if val_pixels is not None else None
    epochs = epochs or cfg.epochs
    optimizer = make_optimizer(cfg.optimizer, model.linear.weight, model.linear.bias, cfg.weight_decay)
    batches = Batches(len(features), cfg.batch_size_for(len(features)), cfg.seed)
    validating = val_features is not None
    history, best_accuracy, best_epoch, best_weights = [], -1.0, 0, None
    progress = Progress(desc, epochs)
    for epoch in range(1, epochs + 1):
        loss, accuracy = train_epoch(cfg, model, optimizer, features, targets, batches, (epoch - 1) / epochs,
                                     1 / epochs)
        record = {"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy}
        if validating:
            record.update(validate(model, val_features, val_labels.long()))
        finite = torch.isfinite(model.linear.weight).all() & torch.isfinite(model.linear.bias).all()
        # One host sync per epoch, for the progress bar, early stopping and the divergence check; none per
        # step.
        record = {k: (v.item() if torch.is_tensor(v) else v) for k, v in record.items()}
        check_finite(cfg, epoch, record, bool(finite), progress)
        history.append(record)
        progress.update(record)
        if validating and record["val_accuracy"] > best_accuracy:
            # A copy on the host: the best weights survive later epochs, at 31 KB per improvement.
            best_accuracy, best_epoch = record["val_accuracy"], epoch
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.linear.state_dict().items()}
        elif validating and cfg.patience and epoch - best_epoch >= cfg.patience:
            break  # big data peaks in a few epochs; the rest would cost time for nothing
    progress.close()
    if best_weights is not None:
        model.linear.load_state_dict(best_weights)
    return FitResult(model.eval(), best_epoch, history, time.perf_counter() - start)


def fit_to_optimum(cfg: Config, pixels: torch.Tensor, labels: torch.Tensor,
                   val_pixels: torch.Tensor | None = None, val_labels: torch.Tensor | None = None,
                   desc: str = "train") -> FitResult:
    """The optimum of mean cross-entropy + weight_decay/2 |W|^2 on these images, by full-batch L-BFGS.

    The loss is convex, so there is one optimum and nothing to stop early: the validation split
    only measures it, and its history has one record per L-BFGS iteration: the penalised training
    objective and the validation loss and accuracy of the iterate.
    """
    start = time.perf_counter()
    model = SoftmaxRegression(cfg.features).to(pixels.device)
    with torch.no_grad():
        prepared = model.prepare(pixels)
        model.fit_standardizer(prepared)
        val = (model.features_of(val_pixels), val_labels.long()) if val_pixels is not None else None
    history = []

    def record(iteration: int, x: torch.Tensor, value: torch.Tensor) -> None:
        entry = {"train_loss": value.flatten()[0]}
        if val is not None:
            d = x.shape[1] - 1
            entry.update(validate_logits(val[0] @ x[0, :d, 0] + x[0, d, 0], val[1]))
        values = torch.stack(list(entry.values())).tolist()  # one host read an iteration
        history.append({"iteration": iteration, **dict(zip(entry, values))})

    iterations = set_to_optimum(model, prepared, labels.long(), float(cfg.weight_decay), desc, record)
    return FitResult(model.eval(), iterations, history, time.perf_counter() - start)


def set_to_optimum(model: SoftmaxRegression, prepared: torch.Tensor, targets: torch.Tensor, decay: float,
                   desc: str, record=None) -> int:
    """Fit the model's linear layer to the optimum on its standardised features; return the iterations.

    `record(iteration, x, value)`, if given, sees each iterate.
    """
    mask = torch.ones(1, len(targets), dtype=torch.bool, device=prepared.device)
    progress = OptimumProgress(desc, 1)

    def report(iteration: int, largest: float, moving: int, x: torch.Tensor, value: torch.Tensor) -> None:
        progress.update(iteration, largest, moving)
        if record is not None:
            record(iteration, x, value)

    weight, bias, iterations, _ = optimum(prepared[None], targets[None], mask, model.mean[None],
                                          model.std[None], [decay], report)
    progress.close()
    with torch.no_grad():
        model.linear.weight.copy_(weight[0].T)
        model.linear.bias.copy_(bias[0, 0])
    return iterations


def check_finite(cfg: Config, epoch: int, record: dict, weights_finite: bool, progress: "Progress") -> None:
    """Stop a run that diverged: its weights would predict nothing useful and must not be published."""
    broken = [k.replace("_", " ") for k in ("train_loss", "val_loss")
              if k in record and not math.isfinite(record[k])]
    if not weights_finite:
        broken.append("weights")
    if broken:
        progress.close()
        raise UserError(f"--lr {cfg.lr:g}: training diverged in epoch {epoch} ({', '.join(broken)} not "
                        f"finite); "
                        f"try a smaller --lr (the default is {Config.lr}) or a smaller --weight-decay")


class Progress:
    """Per-epoch progress: a tqdm bar in a terminal; one plain line per epoch in a log, CI or pipe.

    A log keeps every carriage-return redraw of a bar, so there it is one readable line an epoch
    instead. TQDM_DISABLE=1 (tqdm's own switch) silences both.
    """

    def __init__(self, desc: str, epochs: int | None, unit: str = "epoch", bar_desc: str | None = None):
        self.desc, self.epochs, self.bar = desc, epochs, None
        self.quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
        if not self.quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm  # only a terminal draws a bar

            self.bar = tqdm(total=epochs, desc=bar_desc or desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, record: dict) -> None:
        values = {k.replace("_", " "): v for k, v in record.items() if k != "epoch"}
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()}, refresh=False)
            self.bar.update()
        elif not self.quiet:
            print(f"{self.desc} epoch {record['epoch']}/{self.epochs}: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class OptimumProgress(Progress):
    """L-BFGS progress: a bar of iterations in a terminal; in a log, a plain line every few seconds.

    There is no known number of iterations, so it shows how far the largest gradient entry still is
    from the stopping tolerance, and how many of the models are still moving.
    """
    EVERY_SECONDS = 3.0

    def __init__(self, desc: str, models: int):
        super().__init__(desc, None, unit="it", bar_desc=f"{desc} (L-BFGS)")
        self.models, self.printed = models, time.perf_counter()
        if self.bar is None and not self.quiet:
            print(f"{desc}: fitting {f'{models} models' if models > 1 else 'the model'} to the optimum by "
                  f"L-BFGS (stops when every gradient entry is at most {OPTIMUM_TOL:g})", flush=True)

    def update(self, iteration: int, largest: float, moving: int, *iterate) -> None:
        status = f"largest gradient {largest:.2e}" + (f", {moving} of {self.models} models still moving"
                                                       if self.models > 1 else "")
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update()
        elif not self.quiet and (time.perf_counter() - self.printed >= self.EVERY_SECONDS or not moving):
            self.printed = time.perf_counter()
            print(f"{self.desc} L-BFGS iteration {iteration}: {status}", flush=True)


class Batches:
    """Contiguous slices of the (once shuffled) training set, visited in a new order each epoch."""

    def __init__(self, n_examples: int, batch_size: int, seed: int):
        self.slices = [slice(s, min(s + batch_size, n_examples)) for s in range(0, n_examples, batch_size)]
        self.order = torch.Generator().manual_seed(seed)  # on the host: the order is a Python list

    def epoch(self) -> list[slice]:
        return [self.slices[i] for i in torch.randperm(len(self.slices), generator=self.order).tolist()]


def train_epoch(cfg: Config, model: SoftmaxRegression, optimizer: "Optimizer", features: torch.Tensor,
                targets: torch.Tensor, batches: Batches, progress: float,
                span: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the batches; returns the mean training loss and accuracy as device tensors (no host
    sync).

    `progress` is the fraction of the run done before this epoch and `span` the fraction it covers,
    for the learning-rate schedule.
    """
    loss_sum, correct = torch.zeros((), device=features.device), torch.zeros((), device=features.device)
    epoch = batches.epoch()
    for step, batch in enumerate(epoch):
        logits = model.linear(features[batch])
        loss = F.cross_entropy(logits, targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(learning_rate(cfg, progress + span * step / len(epoch)))
        loss_sum += loss.detach() * (batch.stop - batch.start)
        correct += (logits.detach().argmax(1) == targets[batch]).sum()  # as the weights were at each step
    return loss_sum / len(features), correct / len(features)


def learning_rate(cfg: Config, progress: float) -> float:
    """Cosine decay from the peak at progress 0 to zero at progress 1 (the end of the run), or constant."""
    return cfg.lr * (0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1.0)


@torch.no_grad()
def validate(model: SoftmaxRegression, features: torch.Tensor, targets: torch.Tensor) -> dict:
    """Validation loss and accuracy as device tensors (read on the host once per epoch)."""
    return validate_logits(model.linear(features), targets)


def validate_logits(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    return {"val_loss": F.cross_entropy(logits, targets),
            "val_accuracy": (logits.argmax(1) == targets).float().mean()}


@torch.no_grad()
def predict(model: SoftmaxRegression, pixels: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Class probabilities (n, 10) for uint8 pixels, computed in chunks to bound memory."""
    model.eval()
    return torch.cat([model(part).softmax(1) for part in pixels.split(chunk)]) if len(pixels) else \
        torch.empty(0, 10, device=pixels.device)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)
