"""Loading a run's model.pt (written by core/model.save_model), for `predict`; the kernel never loads one."""
from pathlib import Path

import torch

from .core.errors import UserError
from .core.model import MODEL_FORMAT, SoftmaxRegression


def load_model(path: Path) -> tuple[SoftmaxRegression, dict]:
    """Load a model saved by save_model; the dict holds what was saved beside it."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file") from None
    except Exception as exc:  # torch raises many types for a file that is not a saved model
        raise UserError(f"{path}: not a model saved by digit-recognizer ({type(exc).__name__})") from None
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise UserError(f"{path}: not a model saved by digit-recognizer (format {MODEL_FORMAT} expected)")
    try:  # it claims to be one of ours; anything missing or misshapen inside is the same bad file
        model = SoftmaxRegression(bool(saved["use_deskew"]))
        model.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise UserError(f"{path}: not a model saved by digit-recognizer (damaged contents: "
                        f"{type(exc).__name__})") from None
    return model.eval(), saved
