"""Full-batch L-BFGS for many independent models at once, in plain tensor ops.

Each (fold, strength) model keeps its own curvature history and step length, so batching them into
one tensor program changes no model's iterates; a model whose gradient is small enough stops and
is no longer computed, so the batch shrinks as the strong penalties converge first. (torch.optim's
LBFGS is single-model and imports torch._dynamo, about a second.) Strengths compared at their
optima, not after a fixed budget of epochs, are chosen by the data alone.
"""
import torch

from .model import N_CLASSES
from .optimizer import Progress, validation

MEMORY = 10  # curvature pairs kept, as scikit-learn's lbfgs (scipy's default)
ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
MAX_HALVINGS = 30
# Stop when every model's largest gradient entry is this small: scikit-learn's lbfgs default, on the
# same mean-loss-plus-penalty scale, so both stop at the same distance from the optimum.
OPTIMUM_TOL = 1e-4
MAX_ITER = 1000  # scikit-learn's cap in benchmarks/compare.py; the sample needs about a hundred


def fit_to_optimum(folds, decays: list[float], desc: str) -> tuple:
    """Every fold x strength model to the optimum of its mean cross-entropy + decay/2 |W|^2 (W on the
    standardised features): weight (folds, d, s*10), bias (folds, 1, s*10), history, iterations."""
    features, targets, std, mean = folds.train_features, folds.train_targets, folds.std, folds.mean
    (n_folds, n, d), strengths, classes = features.shape, len(decays), N_CLASSES
    decay = torch.tensor(decays, dtype=features.dtype, device=features.device)
    share = folds.train_mask.to(features.dtype)  # (folds, n): each row's share of its fold's mean loss
    share = share / share.sum(1, keepdim=True)  # padding rows count zero

    def objective(x: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = torch.zeros(n_folds, strengths, dtype=x.dtype, device=x.device), torch.zeros_like(x)
        moving = active.view(n_folds, strengths).cpu()
        for f in range(n_folds):  # one fold's moving strengths at a time: converged models cost nothing
            cols = torch.nonzero(moving[f]).flatten().tolist()
            if cols:
                value[f, cols], grad[f][:, cols] = fold_objective(f, x[f][:, cols], decay[cols])
        return value, grad

    def fold_objective(f: int, part: torch.Tensor, decay: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Value and gradient for one fold's models part (d + 1, s, 10), written out: autograd's X^T G runs
        several times slower on the CPU for so few columns than (G^T X)^T."""
        s = part.shape[1]
        weight = part[:d].reshape(d, -1)
        scaled = weight / std[f][:, None]  # W (x - m) / std + b = x (W / std) + (b - m (W / std))
        logits = torch.addmm(part[d].reshape(-1) - mean[f] @ scaled, features[f], scaled).view(n, s, classes)
        log_p = logits.log_softmax(-1)
        picked = targets[f][:, None, None].expand(n, s, 1)
        value = -(share[f] @ log_p.gather(-1, picked)[..., 0]) + decay / 2 * part[:d].square().sum((0, 2))
        residual = log_p.exp_().scatter_add_(-1, picked, torch.full_like(picked, -1, dtype=log_p.dtype))
        # d(mean loss)/d(logits): softmax minus one-hot, each row weighted.
        residual = residual.mul_(share[f][:, None, None]).view(n, -1)
        bias_grad = residual.sum(0)
        scaled_grad = (residual.T @ features[f]).T - mean[f][:, None] * bias_grad
        weight_grad = (scaled_grad / std[f][:, None]).view(d, s, classes) + decay[:, None] * part[:d]
        return value, torch.cat([weight_grad, bias_grad.view(1, s, classes)])

    models = n_folds * strengths
    fitting = f"{models} models" if models > 1 else "the model"
    progress = Progress(desc, unit="it", every=3.0, intro=f"fitting {fitting} to the optimum by L-BFGS "
                        f"(stops when every gradient entry is at most {OPTIMUM_TOL:g})")
    history = []
    # One model's parameters: its d weight rows and its bias row (dim 1) by its 10 classes (dim 3).
    x = torch.zeros(n_folds, d + 1, strengths, classes, dtype=features.dtype, device=features.device)
    for iterations, largest, moving, x, value in minimise(objective, x, (1, 3), MAX_ITER, OPTIMUM_TOL):
        # How far the largest gradient entry still is from the tolerance: there is no known end.
        progress.update(f"L-BFGS iteration {iterations}", f"largest gradient {largest:.2e}" + (
            f", {moving} of {models} models still moving" if models > 1 else ""), last=not moving)
        weight, bias = x[:, :d].reshape(n_folds, d, -1), x[:, d:].reshape(n_folds, 1, -1)
        # A lone model records every iterate, a batch only its last: the line search only lowers each
        # objective, so nothing diverges and one record is enough.
        if folds.val.numel() and (models == 1 or not moving or iterations == MAX_ITER):
            history.append({"iteration": iterations, "train_loss": float(value.mean()),
                            **validation(folds, weight, bias)})
    progress.bar.close()
    return weight.contiguous(), bias.contiguous(), history, iterations


def minimise(objective, x: torch.Tensor, dims: tuple[int, ...], max_iter: int, tol: float):
    """Minimise every model's objective(x, active) -> (values, gradient) from x until each one's largest
    gradient entry is at most `tol`, yielding (iteration, largest entry, models moving, x, values) each
    iteration. `dims`: a model's parameter dimensions (others index models); objective may skip idle ones."""
    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dims, keepdim=True)

    def amax(a: torch.Tensor) -> torch.Tensor:
        return a.abs().amax(dims, keepdim=True)

    everyone = torch.ones_like(dot(x, x), dtype=torch.bool)
    value, grad = objective(x, everyone)
    value = value.view_as(everyone)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / y.s), oldest first
    for iteration in range(1, max_iter + 1):
        active = amax(grad) > tol
        direction = -two_loop(grad, pairs, dot)
        slope = dot(grad, direction)
        # A model whose history points uphill (rounding, near the optimum) falls back to steepest descent.
        uphill = slope >= 0
        direction = torch.where(uphill, -grad, direction)
        slope = torch.where(uphill, -dot(grad, grad), slope)
        # First step of steepest descent: at most unit length, as scipy's first step is.
        step = torch.ones_like(value) if pairs else torch.clamp(1 / dot(grad, grad).sqrt(), max=1.0)
        step = torch.where(active, step, torch.zeros_like(step))
        for _ in range(MAX_HALVINGS):
            trial = x + step * direction
            new_value, new_grad = objective(trial, active)
            new_value = new_value.view_as(value)
            accepted = (new_value <= value + ARMIJO * step * slope) | ~active
            if bool(accepted.all()):  # the one host sync a step
                break
            step = torch.where(accepted, step, step / 2)
        else:
            accepted = new_value <= value
        moved = accepted & active
        s = torch.where(moved, trial - x, torch.zeros_like(x))
        y = torch.where(moved, new_grad - grad, torch.zeros_like(x))
        curvature = dot(s, y)
        # Strictly convex with a positive penalty, so y.s > 0 wherever a model moved; a zero pair is inert.
        pairs.append((s, y, torch.where(curvature > 0, 1 / curvature, torch.zeros_like(curvature))))
        del pairs[:-MEMORY]
        x = torch.where(moved, trial, x)
        grad = torch.where(moved, new_grad, grad)
        value = torch.where(moved, new_value, value)
        left = amax(grad)
        # The one host sync an iteration besides the line search's.
        largest, moving = torch.stack([left.max(), (left > tol).sum().to(left.dtype)]).tolist()
        yield iteration, largest, int(moving), x, value
        if not moving:
            break


def two_loop(grad: torch.Tensor, pairs: list, dot) -> torch.Tensor:
    """The inverse-Hessian estimate times grad, per model (Nocedal & Wright, algorithm 7.4)."""
    q, alphas = grad.clone(), []
    for s, y, rho in reversed(pairs):
        alpha = rho * dot(s, q)
        q -= alpha * y
        alphas.append(alpha)
    if pairs:
        s, y, rho = pairs[-1]
        yy = dot(y, y)
        q *= torch.where(yy > 0, dot(s, y) / yy.clamp_min(1e-30), torch.ones_like(yy))
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        q += s * (alpha - rho * dot(y, q))
    return q
