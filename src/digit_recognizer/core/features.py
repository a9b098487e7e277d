"""What the one linear layer sees: a ladder of fixed features, computed per image.

An image's features are the same alone or in any batch. On the sample, 5-fold CV at each rung's L2
optimum (README): pixels 0.896, deskew 0.940, normalised 0.950, orientations 0.982.

- `pixels`: the raw 784 pixels as ink in [0, 1], what the tutorials feed it;
- `deskew`: each digit sheared upright by its second moments and centred (the cell above);
- `normalised`: the same resampling also scales the ink's vertical standard deviation to 5.55 px,
  then a Gaussian blur (sigma 1 px), so a stroke a pixel off still overlaps the template it matches;
- `orientations` (the default): the normalised pixels plus 8 x 7 x 7 direction planes: each pixel's
  Sobel gradient magnitude on the upright, unblurred image, shared between the two nearest of 8
  directions, each plane pooled by a Gaussian (sigma 2 px) every 4 px. A linear model cannot compute
  "a horizontal edge near here" from pixels; handed it, it tells strokes apart by direction.
"""
import math

import torch

from .config import Config
from .deskew import SIDE, upright

DEFAULT_RUNG = Config.features
N_PIXELS = SIDE * SIDE
SIZE = 5.55  # the normalised ink's vertical standard deviation, in pixels
BLUR_SIGMA = 1.0
DIRECTIONS = 8
POOL_SIGMA, POOL_STRIDE = 2.0, 4
POOL_TAPS = 12  # an even kernel centres each sample between pixels: 1.5, 5.5, ..., 25.5 in a 28-pixel frame
POOLED = (SIDE + 2 * 4 - POOL_TAPS) // POOL_STRIDE + 1  # 7 samples a side with 4 pixels of zero padding
CHUNK = 2048  # images at a time: the intermediates stay small and cache-warm


def feature_count(rung: str) -> int:
    return N_PIXELS + (DIRECTIONS * POOLED * POOLED if rung == "orientations" else 0)


def feature_blocks(rung: str) -> list[slice]:
    """The feature blocks that share one scale each: the pixels, then the orientation planes."""
    return [slice(0, N_PIXELS)] + ([slice(N_PIXELS, feature_count(rung))] if rung == "orientations" else [])


def image_features(pixels: torch.Tensor, rung: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels (n, 784) -> float features (n, feature_count(rung)), computed chunk by chunk."""
    out = torch.empty(len(pixels), feature_count(rung), dtype=dtype, device=pixels.device)
    for start in range(0, len(pixels), CHUNK):
        ink = pixels[start:start + CHUNK].to(dtype).div_(255.0).view(-1, 1, SIDE, SIDE)
        out[start:start + len(ink)] = features_of_ink(ink, rung)
    return out


def features_of_ink(ink: torch.Tensor, rung: str) -> torch.Tensor:
    """(b, 1, 28, 28) ink in [0, 1] -> (b, feature_count(rung)): one rung of the ladder."""
    if rung == "pixels":
        return ink.flatten(1)
    if rung == "deskew":
        return upright(ink).flatten(1)
    normalised = upright(ink, SIZE)
    blurred = blur(normalised).flatten(1)
    if rung == "normalised":
        return blurred
    return torch.cat([blurred, orientation_planes(normalised).flatten(1)], dim=1)


def orientation_planes(images: torch.Tensor) -> torch.Tensor:
    """(b, 1, 28, 28) -> (b, 8, 7, 7): gradient energy by direction, pooled over 4-pixel cells."""
    # Sobel: smoothing along one axis, the derivative along the other.
    smooth, derive = [1.0, 2.0, 1.0], [-1.0, 0.0, 1.0]
    gx = separable(images, band(smooth, SIDE, 1, 1, images), band(derive, SIDE, 1, 1, images))
    gy = separable(images, band(derive, SIDE, 1, 1, images), band(smooth, SIDE, 1, 1, images))
    magnitude = torch.sqrt(gx.square() + gy.square())
    # The angle in units of 45 degrees, in [0, 8): its magnitude goes to the two nearest directions,
    # linearly by closeness, so a gradient between two directions is not snapped to either.
    position = torch.atan2(gy, gx).div_(2 * math.pi / DIRECTIONS).remainder_(DIRECTIONS)
    lower = position.floor()
    upper_share = position - lower
    lower = lower.long().remainder_(DIRECTIONS)  # 7.99999 can round up to 8.0
    planes = torch.zeros(len(images), DIRECTIONS, SIDE, SIDE, dtype=images.dtype, device=images.device)
    planes.scatter_add_(1, lower, magnitude * (1 - upper_share))
    planes.scatter_add_(1, (lower + 1).remainder_(DIRECTIONS), magnitude * upper_share)
    pool = band(gaussian(POOL_SIGMA, POOL_TAPS), SIDE, POOL_STRIDE, 4, images)
    return separable(planes, pool, pool)


def blur(images: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of BLUR_SIGMA, the frame's size kept (zeros beyond its edge)."""
    kernel = band(gaussian(BLUR_SIGMA, 7), SIDE, 1, 3, images)
    return separable(images, kernel, kernel)


def gaussian(sigma: float, taps: int) -> list[float]:
    offsets = [t - (taps - 1) / 2 for t in range(taps)]
    weights = [math.exp(-o * o / (2 * sigma * sigma)) for o in offsets]
    return [w / sum(weights) for w in weights]


def band(kernel: list[float], size: int, stride: int, padding: int, like: torch.Tensor) -> torch.Tensor:
    """The matrix (out, size) of a 1-D correlation with `kernel`, zero-padded, every `stride`-th output: a
    separable 2-D filter is then two small matmuls, many times faster on the CPU than conv2d on 28x28."""
    out = (size + 2 * padding - len(kernel)) // stride + 1
    matrix = torch.zeros(out, size + 2 * padding, dtype=like.dtype)
    for o in range(out):
        matrix[o, o * stride:o * stride + len(kernel)] = torch.tensor(kernel, dtype=like.dtype)
    return matrix[:, padding:padding + size].to(like.device)


def separable(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """rows @ image @ cols.T for every (b, c, h, w) image: a separable filter, rows along y, cols along x."""
    return rows @ images @ cols.T
