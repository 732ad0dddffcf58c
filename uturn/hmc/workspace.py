"""All the arrays one chain works on, cut from a single allocation in a fixed order.

Why one block: the kernels are compiled with ``reassoc`` so that LLVM vectorises
their sums, and a loop that both sums and stores gets two versions, a vector one
and a scalar one, chosen at run time by whether the arrays it stores to lie less
than a vector's stride past the ones it reads (LLVM's "diff checks"). The two sum
in different orders and so differ in the last bits. Had each array its own
allocation, where malloc put them would pick the version, and the same seed would
give different chains in a fresh thread and in one whose heap earlier runs had
fragmented (it did: ``cores=1`` and ``cores=2`` disagreed about one run in five in
the test suite, never in isolation). Cut from one block the arrays' distances
depend only on the shapes, so every run of a model takes the same versions.

Each piece starts on a multiple of ``ALIGN`` elements (64 bytes) from the block's
start; numba aligns the block itself to 32 bytes, so every piece starts on a 256-bit
vector boundary.
"""
import numpy as np
from numba import njit

from .integrator import JIT_OPTIONS, NO_REFCOUNT

__all__ = ["ALIGN", "padded", "take"]

#: Pieces start on multiples of this many float64s from the block's start (64 bytes).
ALIGN = 8


@njit(**NO_REFCOUNT)
def padded(size):
    """``size`` elements rounded up to a multiple of :data:`ALIGN`."""
    return (size + ALIGN - 1) // ALIGN * ALIGN


@njit(**JIT_OPTIONS)  # counts references: the view it returns outlives the call
def take(block, offset, size):
    """``block[offset:offset + size]`` and the offset of the piece after it."""
    return block[offset:offset + size], offset + padded(size)
