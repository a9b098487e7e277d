"""Where a run trains: CUDA when a GPU is attached and works, else the CPU, and how that is described."""
import sys

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here (no GPU, or a CPU-only torch); "
                        "use --device cpu or auto")
    if name == "auto" and torch.cuda.is_available():
        try:  # whether the GPU takes work: a broken driver must not cost a Kaggle run its submission
            torch.zeros(1, device="cuda").add_(1).item()
            name = "cuda"
        except Exception as exc:  # noqa: BLE001  (RuntimeError, or AssertionError from a CPU-only build)
            print(f"warning: a GPU is attached but CUDA failed to start ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); training on the CPU", file=sys.stderr)
    return torch.device("cpu" if name == "auto" else name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
