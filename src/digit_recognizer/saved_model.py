"""Loading a run's model.pt (written by kernel.save_model) for `predict`; the kernel never loads one."""
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .kernel import FEATURE_RUNGS, MODEL_FORMAT, SoftmaxRegression, predict
from .run_record import SAMPLE_SOURCE, read_run


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
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:  # NaN weights would predict label 0 for every image, silently
        raise UserError(f"{path}: its {broken[0]} holds NaN or infinite values, so it cannot predict; train "
                        f"the model again (a run whose weights stop being finite is never saved by train)")
    if not bool((model.std > 0).all()):  # a zero scale divides every feature by zero
        raise UserError(f"{path}: its std holds zeros or negative values, so it cannot standardise the "
                        f"features; train the model again")
    return model.eval(), saved


def predictions(path: Path, model: SoftmaxRegression, pixels: torch.Tensor) -> np.ndarray:
    """The most probable digit of each image; refused when the model's scores are not finite numbers
    (finite but enormous weights overflow them, and every label would come out 0)."""
    probabilities = predict(model, pixels)
    if not bool(torch.isfinite(probabilities).all()):
        largest = float(model.linear.weight.detach().abs().max())  # detached: no autograd warning before the line
        raise UserError(f"{path}: its weights give scores that are not finite numbers for these images (the "
                        f"largest weight is {largest:.3g}), so it cannot predict; train the model again")
    return probabilities.argmax(1).cpu().numpy()


def saved_rung(saved: dict) -> str:
    """The feature rung a model was trained on; format 1 (before the ladder) saved only whether it deskewed."""
    if saved["format"] == 1:
        return "deskew" if bool(saved["use_deskew"]) else "pixels"
    if saved["features"] not in FEATURE_RUNGS:
        raise ValueError(f"unknown features {saved['features']!r}")
    return saved["features"]


def trained_on(path: Path, saved: dict) -> Path | None:
    """The data `predict` uses without --data: what the model was trained on (None: the embedded sample).

    model.pt says so itself; a model from an older kit, through its run folder's metrics.json. Data that is
    not there any more, or not known, is refused: predicting some other test set would look the same.
    """
    source = saved.get("data")
    if not isinstance(source, str):
        source = read_run(path.parent).data
    if source == SAMPLE_SOURCE:
        return None
    if not isinstance(source, str) or not source:
        raise UserError(f"{path}: does not say what data it was trained on; pass --data DIR, the "
                        f"folder holding the test.csv to predict")
    if not Path(source).exists():
        raise UserError(f"{path}: was trained on {source}, which is not there any more; pass --data DIR, the "
                        f"folder holding the test.csv to predict")
    return Path(source)
