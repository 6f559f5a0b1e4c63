"""CPU memory-allocator settings for training in this process (glibc ``mallopt``).

Role in the flow: the trainer calls :func:`tune_for_training` once when it trains on the CPU. A
training step allocates and frees the same large activation buffers every step. glibc serves blocks
above its mmap threshold (128 KiB, adapting upwards only after a free) with fresh ``mmap`` calls and
returns them with ``munmap``, so every step pays page faults and zero-filling again for every
activation; with two models per step (teacher and student) the threshold never settles. Raising the
mmap threshold and the trim threshold keeps those buffers in the heap and reuses them: measured in
``benchmarks/plain_loop.py`` (README) this alone is worth 10–30 % of CPU throughput. It changes no
result, only where memory comes from. Set ``KDSUITE_CPU_MALLOPT=0`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024   # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 512 * 1024 * 1024
_done = False


def tune_for_training() -> bool:
    """Apply the settings once per process; False where they do not apply (not glibc, opted out)."""
    global _done
    if _done:
        return True
    if os.environ.get("KDSUITE_CPU_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl, macOS, Windows: no mallopt
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _done = ok
    return ok
