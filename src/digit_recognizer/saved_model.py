"""Loading a run's model.pt (written by core/model.save_model), for `predict`; the kernel never loads one."""
from pathlib import Path

import torch

from .core.config import FEATURE_RUNGS
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
    if not isinstance(saved, dict) or saved.get("format") not in (1, MODEL_FORMAT):
        raise UserError(f"{path}: not a model saved by digit-recognizer (format 1 or {MODEL_FORMAT} expected)")
    try:  # it claims to be one of ours; anything missing or misshapen inside is the same bad file
        model = SoftmaxRegression(saved_rung(saved))
        model.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise UserError(f"{path}: not a model saved by digit-recognizer (damaged contents: "
                        f"{type(exc).__name__})") from None
    return model.eval(), saved


def saved_rung(saved: dict) -> str:
    """The feature rung a model was trained on; format 1 (before the ladder) saved only whether it deskewed."""
    if saved["format"] == 1:
        return "deskew" if bool(saved["use_deskew"]) else "pixels"
    if saved["features"] not in FEATURE_RUNGS:
        raise ValueError(f"unknown features {saved['features']!r}")
    return saved["features"]
