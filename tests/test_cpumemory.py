"""benchmark.cpumemory: after keep_freed_memory(), big tensors come from glibc's heap, not from fresh mmaps."""

from __future__ import annotations

import ctypes
import sys

import pytest
import torch

from benchmark import cpumemory

glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mmapped_blocks() -> int:
    """How many blocks glibc holds as separate mmaps right now (mallinfo2().hblks)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblks


@pytest.mark.skipif(not glibc, reason="glibc only")
def test_after_keeping_freed_memory_a_big_tensor_is_not_a_fresh_mmap() -> None:
    assert cpumemory.keep_freed_memory() is True
    assert cpumemory.keep_freed_memory() is True  # idempotent, applied once
    before = _mmapped_blocks()
    blocks = [torch.empty(64 << 20, dtype=torch.uint8) for _ in range(3)]  # 64 MB each: above glibc's default
    assert _mmapped_blocks() == before  # ... mmap threshold (at most 32 MB), yet from the heap
    del blocks


def test_elsewhere_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpumemory.sys, "platform", "darwin")
    assert cpumemory._mallopt() is False
