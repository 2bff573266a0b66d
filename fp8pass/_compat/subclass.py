"""Tensor-subclass plumbing for the watched parameter class (:mod:`fp8pass.released`): running a
torch function with ``__torch_function__`` subclass handling off, as ``nn.Parameter``'s own
(disabled) ``__torch_function__`` does. Checked on torch 2.13.0 and 2.11.0 (CPU).
"""

from __future__ import annotations

from typing import Any

import torch


def torch_function_disabled() -> Any:
    """A context in which torch functions ignore tensor subclasses' ``__torch_function__``
    (``torch._C.DisableTorchFunctionSubclass``, which Dynamo also traces). Checked on torch 2.13.0
    and 2.11.0 (CPU)."""
    return torch._C.DisableTorchFunctionSubclass()
