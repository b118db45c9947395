"""Keep freed memory in the process heap while large CPU batches run (glibc only).

glibc serves blocks of a few MB from fresh ``mmap`` regions and hands them back at ``free``, and
trims the heap's top whenever it frees a large block: a CPU generation step allocates the same
multi-MB temporaries (activations, attention scores) every step, so each step faulted every page
of them in again: 4,000-19,000 page faults and 12-50 ms of kernel time per step at a pool of
4,096 entities, measured. Raising both thresholds once keeps those pages mapped and reused.
The price is that the process keeps up to its peak heap instead of returning it at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 512 * 1024 * 1024  # free memory at the heap's top kept before trimming

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; True when they are in effect.

    A no-op (False) where the C library is not glibc (macOS, Windows, musl) or refuses."""
    global _done
    if _done is None:
        _done = _set_thresholds()
    return _done


def _set_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both or neither is what was measured, so stop at a refusal.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
