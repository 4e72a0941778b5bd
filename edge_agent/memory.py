"""Giving memory back to the system after a burst (start-up, a drained backlog).

CPython frees objects into glibc's heap, and glibc keeps freed pages for reuse; a store PC
running the agent for months wants them back once a burst is over. ``malloc_trim`` is
glibc's; elsewhere (musl, macOS) :func:`trim_heap` does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def trim_heap() -> None:
    """Return glibc's free heap pages to the system (``malloc_trim(0)``)."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)
