"""Keep freed memory in the process for CPU training: glibc's malloc, told not to hand big blocks back.

torch allocates every CPU tensor with `posix_memalign` and frees it when the last reference goes, so a
training step allocates and frees the same activation-sized blocks (MBs each) over and over. glibc serves
blocks above its mmap threshold with a fresh `mmap` and returns them with `munmap`, and trims the heap's
free top back to the kernel; either way the next block of that size starts as untouched pages, and the
kernel zero-fills each 4 KB page on its first write (a page fault). On a 2-core VM that made a 1.1 M-element
`x * mask` of an attention layer cost 8.7 ms instead of 2.7 ms. Raising the mmap threshold to 1 GiB and the
trim threshold to 2 GiB (`mallopt`) keeps freed blocks in the heap for reuse: no faults after the first
step. The price is that the process keeps its peak heap until it exits, which a training process reaches
anyway in its first step.

This is process-wide and cannot be undone (glibc stops adapting its thresholds once they are set), so it is
applied once, by `fit` on the CPU. Elsewhere (macOS, Windows, musl) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30  # bytes: blocks up to 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # bytes: free heap top kept up to 2 GiB (mallopt takes an int)

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (once per process); True where they are in effect."""
    if "kept" not in _state:
        _state["kept"] = _mallopt()
    return _state["kept"]


def _mallopt() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: no library search (find_library runs ldconfig)
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl's mallopt ignores these
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    gnu_get_libc_version.restype = ctypes.c_char_p
    # mallopt returns 1 on success; an mmap threshold above glibc's maximum (32 MB on some builds) is
    # refused, and then the maximum is the best there is
    mmap_ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 or mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
    trim_ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not (mmap_ok and trim_ok):
        log.warning("glibc %s refused the malloc thresholds; CPU training allocates as before",
                    gnu_get_libc_version().decode())
    return mmap_ok and trim_ok
