"""The fit on a GPU: the same features, the same batched L-BFGS, the same CV and predictions as on the CPU.

Run them alone with `pytest -m cuda`. Where no CUDA device works they skip, and say so; everything here
also runs, and is tested, on the CPU. Nothing in the fit may assume the CPU: each test computes on the
GPU and compares with the CPU's answer on the same data.
"""
import json

import pytest
import torch

from conftest import ROOT, run_cli
from digit_recognizer.kernel import (FEATURE_RUNGS, Config, Folds, Penalty, fit_to_optimum, image_features, predict,
                                     stratified_folds, to_device, train)
from digit_recognizer.local_data import load_data
from digit_recognizer.notebook import pushed_copy


def cuda_works() -> str | None:
    """None when a CUDA device takes work; else why not, for the skip."""
    if not torch.cuda.is_available():
        return "no CUDA device here (torch.cuda.is_available() is False): these tests run where a GPU is"
    try:
        torch.zeros(1, device="cuda").add_(1).item()
    except Exception as exc:  # noqa: BLE001  (a broken driver: say which)
        return f"CUDA is present but does not start here ({type(exc).__name__}: {exc})"
    return None


CUDA_PROBLEM = cuda_works()  # asked once: it starts CUDA, where there is one
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(CUDA_PROBLEM is not None, reason=str(CUDA_PROBLEM))]
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture(scope="module")
def sample():
    return load_data(None)


@pytest.mark.parametrize("rung", FEATURE_RUNGS)
def test_features_on_the_gpu_are_the_cpus(sample, rung):
    pixels = torch.from_numpy(sample.train_images[:3000])
    on_cpu = image_features(pixels, rung)
    on_gpu = image_features(pixels.to(CUDA), rung)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


def test_batched_lbfgs_on_the_gpu_reaches_the_cpus_optimum(sample):
    labels = torch.from_numpy(sample.train_labels[:2000])
    splits = stratified_folds(sample.train_labels[:2000], 3, 0)
    strengths = [Penalty(c=1.0), Penalty(c=0.1), Penalty(fixed=0.01)]
    fits = {}
    for device in (CPU, CUDA):
        prepared = image_features(torch.from_numpy(sample.train_images[:2000]).to(device), "sqrt-orientations")
        folds = Folds("sqrt-orientations", prepared, labels.to(device), splits)
        fit = fit_to_optimum(folds, strengths, f"on {device.type}")
        assert fit.converged and fit.weight.device.type == device.type
        fits[device.type] = (folds.scores(fit.weight, fit.bias)[0].softmax(-1).cpu(), fit)
    (cpu_probabilities, _), (gpu_probabilities, _) = fits["cpu"], fits["cuda"]
    # Both within the tolerance of one optimum: the same predictions, probabilities within a few thousandths.
    torch.testing.assert_close(gpu_probabilities, cpu_probabilities, rtol=0, atol=5e-3)
    assert (gpu_probabilities.argmax(-1) == cpu_probabilities.argmax(-1)).float().mean() >= 0.998


def test_cv_with_auto_on_the_gpu_gives_the_cpus_estimate(sample):
    small = sample.__class__("small", sample.train_images[:2000], sample.train_labels[:2000], sample.test_images[:100])
    config = Config(folds=3, weight_decay="auto")
    on_cpu, on_gpu = train(config, small, CPU), train(config, small, CUDA)
    assert on_gpu.model.linear.weight.device.type == "cuda"
    assert on_gpu.cv.penalty == on_cpu.cv.penalty
    assert abs(on_gpu.cv.accuracy - on_cpu.cv.accuracy) <= 3 / 2000  # at most a few images apart
    assert on_gpu.fit.converged


def test_predict_on_the_gpu_matches_the_cpu(sample):
    trained = train(Config(), sample, CPU)
    pixels = to_device(sample.test_images, CPU)
    on_cpu = predict(trained.model, pixels).argmax(1)
    on_gpu = predict(trained.model.to(CUDA), pixels.to(CUDA)).argmax(1).cpu()
    assert (on_cpu == on_gpu).float().mean() >= 0.999


def test_train_with_device_cuda_end_to_end(tmp_path):
    done = run_cli("train", "--device", "cuda", "--folds", "3", "--runs", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda (") and metrics["config"]["device"] == "cuda"
    assert metrics["fit"]["converged"] and metrics["cv"]["accuracy"] > 0.97


def test_the_notebook_runs_on_the_gpu_in_kaggles_layout(tmp_path):
    from test_notebook import execute_on_kaggle, printed

    executed, working = execute_on_kaggle(pushed_copy(ROOT, {"device": "cuda"}), tmp_path)
    assert "training on cuda" in printed(executed)
    metrics = json.loads((working / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda (") and metrics["fit"]["converged"]
    assert len((working / "submission.csv").read_text().splitlines()) == 1001
