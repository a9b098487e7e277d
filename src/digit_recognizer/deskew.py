"""Moment-based deskewing: shear each digit so its principal axis is vertical, and centre it.

The classic preprocessing for linear models on MNIST (LeCun's table: 88.0% -> 91.6% for a linear
classifier). The whole batch is warped by one affine_grid + grid_sample call on the device.
"""
import torch
import torch.nn.functional as F

SIDE = 28
CHUNK = 8192  # bounds the sampling grid's memory (CHUNK * 28 * 28 * 2 floats)


def deskew(images: torch.Tensor) -> torch.Tensor:
    """Deskew a float batch (n, 784) with ink in [0, 1]; returns the same shape."""
    return torch.cat([_deskew_chunk(chunk) for chunk in images.split(CHUNK)]) if len(images) else images


def _deskew_chunk(flat: torch.Tensor) -> torch.Tensor:
    images = flat.view(-1, 1, SIDE, SIDE)
    theta = shear_to_upright(images[:, 0])
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped.reshape(len(flat), SIDE * SIDE)


def shear_to_upright(images: torch.Tensor) -> torch.Tensor:
    """Per-image affine matrices (n, 2, 3) mapping output to input, in grid_sample's [-1, 1] units.

    Output pixel (x, y) reads input (x + alpha * y + tx, y + ty): alpha = cov(x, y) / var(y) removes
    the slant, and (tx, ty) moves the centre of mass to the middle of the frame.
    """
    coords = torch.arange(SIDE, dtype=images.dtype, device=images.device)
    mass = images.sum(dim=(1, 2)).clamp_min(1e-6)
    rows, cols = images.sum(dim=2), images.sum(dim=1)  # ink per row (y) and per column (x)
    cy = rows @ coords / mass
    cx = cols @ coords / mass
    dy = coords[None, :] - cy[:, None]
    dx = coords[None, :] - cx[:, None]
    var_y = (rows * dy**2).sum(1) / mass
    cov_xy = torch.einsum("nyx,ny,nx->n", images, dy, dx) / mass
    alpha = torch.where(var_y > 1e-6, cov_xy / var_y.clamp_min(1e-6), torch.zeros_like(var_y))
    centre = (SIDE - 1) / 2
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = 1
    theta[:, 0, 1] = alpha
    theta[:, 0, 2] = (cx - centre) / (SIDE / 2)
    theta[:, 1, 1] = 1
    theta[:, 1, 2] = (cy - centre) / (SIDE / 2)
    return theta
