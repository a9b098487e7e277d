"""Full-batch L-BFGS for many independent models at once, in plain tensor ops.

`--weight-decay auto` compares L2 strengths by cross-validation. The penalised loss is convex, so
each (fold, strength) model has one optimum, and comparing strengths means comparing those optima:
a fixed budget of Adam epochs stops short of them by an amount that depends on the strength. Every
model here keeps its own curvature history and its own step length (each inner product is taken
per model), so batching folds x strengths into one tensor program changes no model's iterates.
torch.optim.LBFGS is single-model and imports torch._dynamo (about a second); this needs neither.
"""
from typing import Callable

import torch

MEMORY = 10  # curvature pairs kept, as scikit-learn's lbfgs (scipy's default)
ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
MAX_HALVINGS = 30

# x (models..., params..., with the model dims given by `dims`) -> (per-model objective, its gradient)
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def minimise(objective: Objective, x: torch.Tensor, dims: tuple[int, ...], max_iter: int,
             tol: float) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Minimise every model's objective from x; return x, the iterations run and each model's objective.

    `dims` are the dimensions of x that hold one model's parameters (reduced by its inner products);
    the others index the models. A model stops moving once its largest gradient entry is at most
    `tol` (scikit-learn's lbfgs criterion on the same mean-loss scale); the run stops when all have.
    """
    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dims, keepdim=True)

    def amax(a: torch.Tensor) -> torch.Tensor:
        return a.abs().amax(dims, keepdim=True)

    value, grad = objective(x)
    value = value.view_as(dot(x, x))
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / y.s), oldest first
    iteration = 0
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
            new_value, new_grad = objective(trial)
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
        if not bool((amax(grad) > tol).any()):
            break
    return x, iteration, value


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
