"""Adam and Nesterov SGD as a few plain tensor updates.

torch.optim imports torch._dynamo on its first step: about a second of start-up, more than a whole
fit on the sample. These updates do the same arithmetic in the same order as torch's single-tensor
implementations (what torch.optim runs on the CPU), so a run's numbers are unchanged. They also take
a weight-decay tensor that broadcasts over the weights, which batched fits (one weight matrix per
fold and per penalty) need.
"""
import torch

BETAS = (0.9, 0.999)
EPS = 1e-8
MOMENTUM = 0.9


class Optimizer:
    """Updates params from their .grad; `decays` holds each param's L2 strength (a float or a tensor)."""

    def __init__(self, params: list[torch.Tensor], decays: list):
        self.params, self.decays = params, decays
        self.steps = 0

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.steps += 1
        for i, (param, decay) in enumerate(zip(self.params, self.decays)):
            self.update(i, param, with_decay(param.grad, param, decay), lr)

    def update(self, i: int, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        raise NotImplementedError


def with_decay(grad: torch.Tensor, param: torch.Tensor, decay) -> torch.Tensor:
    """The gradient of loss + decay/2 * |param|^2."""
    if torch.is_tensor(decay):
        return grad.addcmul(param, decay)
    return grad.add(param, alpha=decay) if decay != 0 else grad


class Adam(Optimizer):
    def __init__(self, params: list[torch.Tensor], decays: list):
        super().__init__(params, decays)
        self.means = [torch.zeros_like(p) for p in params]
        self.squares = [torch.zeros_like(p) for p in params]

    def update(self, i: int, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        beta1, beta2 = BETAS
        mean, square = self.means[i], self.squares[i]
        mean.lerp_(grad, 1 - beta1)
        square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(self.steps)
        step_size = lr / (1 - beta1**step)
        denom = (square.sqrt() / (1 - beta2**step) ** 0.5).add_(EPS)
        param.addcdiv_(mean, denom, value=-step_size)


class NesterovSGD(Optimizer):
    def __init__(self, params: list[torch.Tensor], decays: list):
        super().__init__(params, decays)
        self.velocities: list[torch.Tensor | None] = [None] * len(params)

    def update(self, i: int, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        velocity = self.velocities[i]
        if velocity is None:
            velocity = self.velocities[i] = grad.detach().clone()
        else:
            velocity.mul_(MOMENTUM).add_(grad, alpha=1)
        param.add_(grad.add(velocity, alpha=MOMENTUM), alpha=-lr)


def make_optimizer(name: str, weight: torch.Tensor, bias: torch.Tensor, weight_decay) -> Optimizer:
    # L2 on the weights only: penalising the bias would shift the class priors.
    kind = NesterovSGD if name == "sgd" else Adam
    return kind([weight, bias], [weight_decay, 0.0])
