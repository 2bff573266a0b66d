"""Fidelity metrics: SQNR for tensors, PSNR and SSIM for images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "sqnr", "ssim"]


def sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``20 log10(|ref| / |ref - out|)`` (as torchao's
    tests compute it); ``inf`` when the two are equal."""
    ref, out = ref.detach().float(), out.detach().float()
    return (20 * torch.log10(ref.norm() / (ref - out).norm())).item()


def psnr(ref: torch.Tensor, out: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of images with values in ``[0, data_range]``."""
    mse = F.mse_loss(out.detach().float(), ref.detach().float())
    return (10 * torch.log10(data_range**2 / mse)).item()


def ssim(ref: torch.Tensor, out: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean structural similarity of ``(N, C, H, W)`` images (Wang et al. 2004: 11x11 Gaussian
    window, sigma 1.5, K1 = 0.01, K2 = 0.03), channels averaged."""
    x, y = ref.detach().float(), out.detach().float()
    channels = x.shape[1]
    coords = torch.arange(11, dtype=torch.float32, device=x.device) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, 11, 11).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean().item()
