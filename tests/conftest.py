import pytest
import torch

from .helpers import BF16, ToyDenoiser


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return ToyDenoiser().to(BF16).eval().requires_grad_(False)


@pytest.fixture
def toy_input():
    torch.manual_seed(1)
    return torch.randn(2, 4, 16, 16, dtype=BF16)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
