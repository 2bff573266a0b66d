"""A parameter's storage: freed and given back while the Parameter object (its identity, shape,
dtype, device: what Dynamo guards) stays; ``.data`` through torch's own descriptor; a DTensor's
local shard. Checked on torch 2.13.0 and 2.11.0 (CPU); DTensor parts on 2.13.0 only (CPU, gloo).
"""

from __future__ import annotations

import sys
from typing import Any

import torch


def local_tensor(t: Any) -> Any:
    """A DTensor's local shard (the tensor that holds this rank's memory); any other value as it is.
    Reads the private ``DTensor._local_tensor`` (``to_local()`` goes through autograd and may hand
    back a view). Looks the class up in ``sys.modules`` only: no DTensor exists unless
    ``torch.distributed.tensor`` was imported, and importing it here would slow ``import fp8pass``.
    Checked on torch 2.13.0 (CPU, gloo); 2.11.0 unchecked (its ``DTensor`` has the same attribute)."""
    module = sys.modules.get("torch.distributed.tensor")
    if module is not None and isinstance(t, module.DTensor):
        return t._local_tensor
    return t


def release_storage(t: torch.Tensor) -> bool:
    """Free ``t``'s memory but keep its shape, dtype, device and identity (so Dynamo's guards
    still pass). Reading it afterwards is undefined; callers must stop every eager read.
    The same mechanism FSDP2 uses. A tensor on storage that cannot be resized (a memory-mapped
    file: ``from_pretrained`` on a CPU maps the safetensors file) is first moved to a fresh
    allocation that is never written, so no page of it becomes resident, and the mapping is
    let go. A DTensor's local shard is what is freed (a DTensor's own storage cannot be resized;
    Dynamo guards its spec and the local tensor's shape, which stay). Checked on torch 2.13.0 and
    2.11.0 (CPU); for DTensors on 2.13.0 only (CPU, gloo), 2.11.0 unchecked."""
    t = local_tensor(t)
    storage = t.untyped_storage()
    if t.storage_offset() != 0 or storage.nbytes() != t.numel() * t.element_size():
        return False
    if not storage.resizable():
        set_tensor_data(t, torch.empty_like(t, memory_format=torch.contiguous_format))
        storage = t.untyped_storage()
    storage.resize_(0)
    return True


def is_released(t: torch.Tensor) -> bool:
    """Whether :func:`release_storage` freed ``t`` (a DTensor: its local shard). Checked on torch
    2.13.0 and 2.11.0 (CPU); for DTensors on 2.13.0 only, 2.11.0 unchecked."""
    t = local_tensor(t)
    return t.numel() > 0 and t.untyped_storage().nbytes() == 0


def restore_storage(t: torch.Tensor, value: torch.Tensor) -> None:
    """Give a released ``t`` memory again, holding ``value`` (for a DTensor, a DTensor laid out like
    it: local shard to local shard). Checked on torch 2.13.0 and 2.11.0 (CPU); for DTensors on
    2.13.0 only, 2.11.0 unchecked."""
    t, value = local_tensor(t), local_tensor(value)
    t.untyped_storage().resize_(t.numel() * t.element_size())
    with torch.no_grad():
        t.copy_(value)


_TENSOR_DATA = torch.Tensor.data  # the C-level descriptor behind ``tensor.data``


def tensor_data(t: torch.Tensor) -> torch.Tensor:
    """``t.data`` through torch's own descriptor, for a subclass whose ``data`` property wraps it.
    ``Tensor.data`` is a getset descriptor of the C class; checked on torch 2.13.0 and 2.11.0 (CPU)."""
    return _TENSOR_DATA.__get__(t)


def set_tensor_data(t: torch.Tensor, value: torch.Tensor) -> None:
    """``t.data = value`` through torch's own descriptor. Checked on torch 2.13.0 and 2.11.0 (CPU)."""
    _TENSOR_DATA.__set__(t, value)
