import math

import torch

from fp8pass.metrics import psnr, sqnr, ssim


def test_sqnr():
    ref = torch.ones(100)
    assert sqnr(ref, ref) == math.inf
    assert abs(sqnr(ref, ref * 1.1) - 20.0) < 1e-4  # noise is a tenth of the signal


def test_psnr():
    ref = torch.zeros(1, 3, 8, 8)
    assert abs(psnr(ref, ref + 0.1) - 20.0) < 1e-4


def test_ssim_is_one_for_equal_images_and_drops_with_noise():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 32, 32)
    assert abs(ssim(img, img) - 1.0) < 1e-6
    slight, heavy = (
        ssim(img, (img + 0.02 * torch.randn_like(img)).clamp(0, 1)),
        ssim(img, torch.rand_like(img)),
    )
    assert 0.9 < slight < 1.0 and heavy < 0.1
    assert abs(ssim(img, img * 0.5 + 0.25) - ssim(img * 0.5 + 0.25, img)) < 1e-6  # symmetric
