"""Moment-based deskewing: shear each digit so its principal axis is vertical, and centre it.

The classic preprocessing for linear models on MNIST (LeCun's table: 88.0% -> 91.6% for a linear
classifier). A linear model scores each pixel on its own, so a slanted or off-centre 7 puts its ink
where the template has none; upright and centred, every 7 inks roughly the same pixels. On the
sample it is worth four points (5-fold CV 0.9415 with it, 0.9035 without; README).
The whole batch is warped by one grid_sample call on the device; the sampling grid is
built by broadcasting rather than affine_grid, whose batched tiny matmuls are slow on the CPU.
"""
import torch
import torch.nn.functional as F

SIDE = 28
# Chunks keep the sampling grid (CHUNK * 28 * 28 * 2 floats) small enough to stay in cache and to be
# reused by the allocator, instead of paging in fresh memory for the whole batch.
CHUNK = 2048


def deskew_(images: torch.Tensor) -> torch.Tensor:
    """Deskew a float batch (n, 784) with ink in [0, 1] in place, chunk by chunk; returns it."""
    for start in range(0, len(images), CHUNK):
        chunk = images[start:start + CHUNK].view(-1, 1, SIDE, SIDE)
        warped = F.grid_sample(chunk, upright_grid(chunk[:, 0]), mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        chunk.copy_(warped)  # safe: the chunk was read whole before this write
    return images


def upright_grid(images: torch.Tensor) -> torch.Tensor:
    """Sampling grid (n, 28, 28, 2) in grid_sample's [-1, 1] units, from the images' moments.

    Output pixel (x, y) reads input (x + alpha * (y - c) + cx - c, y + cy - c), c the frame's centre:
    alpha = cov(x, y) / var(y) removes the slant, and the centre of mass moves to the middle.
    """
    coords = torch.arange(SIDE, dtype=images.dtype, device=images.device)
    rows, cols = images.sum(dim=2), images.sum(dim=1)  # ink per row (y) and per column (x)
    mass = rows.sum(1).clamp_min(1e-6)
    cy, cx = rows @ coords / mass, cols @ coords / mass
    var_y = rows @ coords.square() / mass - cy.square()
    cov_xy = (images @ coords) @ coords / mass - cx * cy  # sum over y, x of ink * x * y
    alpha = torch.where(var_y > 1e-3, cov_xy / var_y.clamp_min(1e-3), torch.zeros_like(var_y))
    # grid_sample's units with align_corners=False: a pixel p from the centre sits at p / (SIDE / 2).
    centred = (coords - (SIDE - 1) / 2) / (SIDE / 2)
    # (n, 28): one shift per output row.
    x_shift = alpha[:, None] * centred + (cx - (SIDE - 1) / 2)[:, None] / (SIDE / 2)
    y_in = centred + (cy - (SIDE - 1) / 2)[:, None] / (SIDE / 2)  # (n, 28)
    return torch.stack((centred + x_shift[:, :, None], y_in[:, :, None].expand(-1, -1, SIDE)), dim=-1)
