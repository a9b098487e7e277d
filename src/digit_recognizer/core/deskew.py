"""Moment-based deskewing: shear each digit so its principal axis is vertical, and centre it.

A linear model scores each pixel on its own, so a slanted or off-centre 7 puts its ink where the template
has none; upright and centred, every 7 inks roughly the same pixels (LeCun et al. 1998: 12% -> 8.4% error
for a linear classifier; on the sample, 5-fold CV 0.9035 -> 0.9415). With `size`, the same bilinear
resampling also scales the digit to that vertical spread: one interpolation, not two. The sampling grid is
built by broadcasting rather than affine_grid, whose batched tiny matmuls are slow on the CPU.
"""
import torch
import torch.nn.functional as F

SIDE = 28


def upright(images: torch.Tensor, size: float | None = None) -> torch.Tensor:
    """Deskewed (and, with `size`, size-normalised) copies of float images (n, 1, 28, 28), ink in [0, 1]."""
    return F.grid_sample(images, upright_grid(images[:, 0], size), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def upright_grid(images: torch.Tensor, size: float | None = None) -> torch.Tensor:
    """Sampling grid (n, 28, 28, 2) in grid_sample's [-1, 1] units, from the images' moments.

    Output pixel (x, y), taken from the frame's centre c, reads input (cx + k (x + alpha y), cy + k y):
    alpha = cov(x, y) / var(y) removes the slant, the centre of mass moves to the middle, and the
    zoom k is 1, or sd(y) / size so that the ink's vertical spread becomes `size` pixels.
    """
    coords = torch.arange(SIDE, dtype=images.dtype, device=images.device)
    rows, cols = images.sum(dim=2), images.sum(dim=1)  # ink per row (y) and per column (x)
    mass = rows.sum(1).clamp_min(1e-6)
    cy, cx = rows @ coords / mass, cols @ coords / mass
    var_y = rows @ coords.square() / mass - cy.square()
    cov_xy = (images @ coords) @ coords / mass - cx * cy  # sum over y, x of ink * x * y
    flat = var_y <= 1e-3  # no vertical spread (blank, or one row of ink): nothing to straighten or scale
    alpha = torch.where(flat, torch.zeros_like(var_y), cov_xy / var_y.clamp_min(1e-3))
    zoom = torch.ones_like(var_y) if size is None else torch.where(flat, torch.ones_like(var_y),
                                                                    var_y.clamp_min(1e-3).sqrt() / size)
    # grid_sample's units with align_corners=False: a pixel p from the centre sits at p / (SIDE / 2).
    centred = (coords - (SIDE - 1) / 2) / (SIDE / 2)
    # (n, 28): one shift per output row, and one zoom per image.
    x_shift = (alpha * zoom)[:, None] * centred + (cx - (SIDE - 1) / 2)[:, None] / (SIDE / 2)
    y_in = zoom[:, None] * centred + (cy - (SIDE - 1) / 2)[:, None] / (SIDE / 2)  # (n, 28)
    x_in = zoom[:, None, None] * centred + x_shift[:, :, None]  # (n, 28 rows, 28 columns)
    return torch.stack((x_in, y_in[:, :, None].expand(-1, -1, SIDE)), dim=-1)
