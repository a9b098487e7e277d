"""core/optimizer.py's hand-written Adam and Nesterov SGD, step for step against torch.optim.

The kit applies L2 weight decay to the weights only (the bias is not penalised) and passes the
learning rate of its schedule at every step; torch.optim gets the same as two parameter groups and a
learning rate set before each step. Gradients come from a real loss on real digits, computed on each
copy of the parameters separately, so each side follows its own trajectory.
"""
import pytest
import torch
import torch.nn.functional as F

from digit_recognizer.core.optimizer import BETAS, EPS, MOMENTUM, Optimizer
from digit_recognizer.local_data import load_data

STEPS = 12
LEARNING_RATES = [0.05 * (0.5 + 0.5 * torch.cos(torch.tensor(torch.pi * s / STEPS)).item()) + 1e-3
                  for s in range(STEPS)]  # a cosine schedule, as the kit's default


@pytest.fixture(scope="module")
def digits():
    data = load_data(None)
    images = torch.from_numpy(data.train_images[:512]).float() / 255.0
    return images, torch.from_numpy(data.train_labels[:512]).long()


def start(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(784, 10, generator=generator) * 0.01, torch.randn(10, generator=generator) * 0.01


def set_gradients(weight: torch.Tensor, bias: torch.Tensor, digits, step: int) -> None:
    images, labels = digits
    batch = slice(64 * (step % 8), 64 * (step % 8 + 1))
    weight.grad, bias.grad = torch.autograd.grad(F.cross_entropy(images[batch] @ weight + bias, labels[batch]),
                                                 (weight, bias))


def torch_optimizer(name: str, weight: torch.Tensor, bias: torch.Tensor, decay: float) -> torch.optim.Optimizer:
    groups = [{"params": [weight], "weight_decay": decay}, {"params": [bias], "weight_decay": 0.0}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=LEARNING_RATES[0], betas=BETAS, eps=EPS, foreach=False)
    return torch.optim.SGD(groups, lr=LEARNING_RATES[0], momentum=MOMENTUM, nesterov=True, foreach=False)


# The batched CV fits pass the strength as a tensor that broadcasts over the weights (one per column block).
@pytest.mark.parametrize("decay, kit_decay", [(0.0, 0.0), (0.03, 0.03), (0.03, torch.full((1, 10), 0.03))],
                         ids=["no weight decay", "weight decay 0.03", "weight decay 0.03 as a tensor"])
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_each_step_matches_torch_optim(digits, name, decay, kit_decay):
    kit_weight, kit_bias = (t.clone().requires_grad_() for t in start())
    ref_weight, ref_bias = (t.clone().requires_grad_() for t in start())
    kit = Optimizer(name, kit_weight, kit_bias, kit_decay)
    reference = torch_optimizer(name, ref_weight, ref_bias, decay)
    for step, lr in enumerate(LEARNING_RATES):
        set_gradients(kit_weight, kit_bias, digits, step)
        set_gradients(ref_weight, ref_bias, digits, step)
        kit.step(lr)
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
        torch.testing.assert_close(kit_weight, ref_weight, msg=lambda m: f"{name}, step {step + 1}, weights: {m}")
        torch.testing.assert_close(kit_bias, ref_bias, msg=lambda m: f"{name}, step {step + 1}, bias: {m}")
    assert (kit_weight - start()[0]).abs().max() > 1e-3  # the steps did move the weights
