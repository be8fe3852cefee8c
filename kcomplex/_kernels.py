"""Numba kernels of the block decomposition: block keys, counting, canonical keys.

Blocks are encoded as base-``n_symbols`` integers read row-major with the first symbol
most significant (``int64``: 9 symbols x 12 is below 2**35). Distinct blocks are counted
in an open-addressing hash table that records them in order of first appearance, the
order in which pybdm's ``Counter`` sums them, so sums match pybdm to the last bit.

Inputs are validated by the callers in ``bdm.py``: these kernels assume ``uint8``
symbols below ``base``, C-contiguous arrays and in-range geometry. Every kernel also runs
as plain Python under ``NUMBA_DISABLE_JIT=1`` (the test suite does that).
"""

import math

import numpy as np
from numba import njit

_EMPTY = -1
_MIX = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: Fibonacci hashing


def new_table(expected: int):
    """Empty hash-counter state for about ``expected`` distinct keys."""
    cap = 16
    while cap < 2 * expected:
        cap *= 2
    return (
        np.full(cap, _EMPTY, dtype=np.int64),  # slot -> key
        np.zeros(cap, dtype=np.int64),  # slot -> id (order of first appearance)
        np.zeros(cap // 2, dtype=np.int64),  # id -> key
        np.zeros(cap // 2, dtype=np.int64),  # id -> count
        0,  # number of distinct keys
    )


@njit(cache=True)
def _slot(key, mask):
    h = int(key) * _MIX
    return (h ^ (h >> 29)) & mask


@njit(cache=True)
def _grow(tkeys, tids, ukeys, ucounts, n):
    cap = tkeys.size * 2
    mask = cap - 1
    nkeys = np.full(cap, _EMPTY, dtype=np.int64)
    nids = np.zeros(cap, dtype=np.int64)
    for i in range(n):
        h = _slot(ukeys[i], mask)
        while nkeys[h] != _EMPTY:
            h = (h + 1) & mask
        nkeys[h] = ukeys[i]
        nids[h] = i
    nukeys = np.zeros(cap // 2, dtype=np.int64)
    nucounts = np.zeros(cap // 2, dtype=np.int64)
    nukeys[:n] = ukeys[:n]
    nucounts[:n] = ucounts[:n]
    return nkeys, nids, nukeys, nucounts


@njit(cache=True)
def _insert(key, count, tkeys, tids, ukeys, ucounts, n):
    """Add ``count`` to ``key``; returns the new number of distinct keys."""
    mask = tkeys.size - 1
    h = _slot(key, mask)
    while True:
        k = tkeys[h]
        if k == key:
            ucounts[tids[h]] += count
            return n
        if k == _EMPTY:
            tkeys[h] = key
            tids[h] = n
            ukeys[n] = key
            ucounts[n] = count
            return n + 1
        h = (h + 1) & mask


@njit(cache=True)
def count_1d(x, start, stop, size, step, base, tkeys, tids, ukeys, ucounts, n):
    """Count the windows ``x[s:s+size]`` for ``s = start, start+step, ...``, ``s+size <= stop``."""
    s = start
    while s + size <= stop:
        if 2 * (n + 1) > tkeys.size:
            tkeys, tids, ukeys, ucounts = _grow(tkeys, tids, ukeys, ucounts, n)
        key = 0
        for j in range(s, s + size):
            key = key * base + int(x[j])
        n = _insert(key, 1, tkeys, tids, ukeys, ucounts, n)
        s += step
    return tkeys, tids, ukeys, ucounts, n


@njit(cache=True)
def count_2d(x, r0, c0, height, width, size, step, base, tkeys, tids, ukeys, ucounts, n):
    """Count the ``size x size`` windows of ``x[r0:r0+height, c0:c0+width]``, row-major,
    with top-left corners on a grid of pitch ``step``."""
    r = r0
    while r + size <= r0 + height:
        c = c0
        while c + size <= c0 + width:
            if 2 * (n + 1) > tkeys.size:
                tkeys, tids, ukeys, ucounts = _grow(tkeys, tids, ukeys, ucounts, n)
            key = 0
            for i in range(r, r + size):
                for j in range(c, c + size):
                    key = key * base + int(x[i, j])
            n = _insert(key, 1, tkeys, tids, ukeys, ucounts, n)
            c += step
        r += step
    return tkeys, tids, ukeys, ucounts, n


@njit(cache=True)
def merge_counts(keys, counts, tkeys, tids, ukeys, ucounts, n):
    """Add ``counts`` of ``keys`` (in order) into a hash-counter state."""
    for i in range(keys.size):
        if 2 * (n + 1) > tkeys.size:
            tkeys, tids, ukeys, ucounts = _grow(tkeys, tids, ukeys, ucounts, n)
        n = _insert(keys[i], counts[i], tkeys, tids, ukeys, ucounts, n)
    return tkeys, tids, ukeys, ucounts, n


@njit(cache=True)
def canonical_keys(keys, length, base):
    """Relabel each block's symbols in order of first appearance (``40524 -> 01230``)."""
    out = np.empty_like(keys)
    digits = np.empty(length, dtype=np.int64)
    label = np.empty(base, dtype=np.int64)
    for i in range(keys.size):
        k = keys[i]
        for j in range(length - 1, -1, -1):
            digits[j] = k % base
            k //= base
        label[:] = -1
        nxt = 0
        c = 0
        for j in range(length):
            d = digits[j]
            if label[d] < 0:
                label[d] = nxt
                nxt += 1
            c = c * base + label[d]
        out[i] = c
    return out


@njit(cache=True)
def n_labels(keys, length, base):
    """Number of distinct symbols in each canonical key (its largest digit + 1)."""
    out = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        k = keys[i]
        top = 0
        for _ in range(length):
            d = k % base
            if d > top:
                top = d
            k //= base
        out[i] = top + 1
    return out


@njit(cache=True)
def bdm_sum(ctm, counts):
    """Sum of ``ctm + log2(count)`` in the given order, as pybdm adds them."""
    total = 0.0
    for i in range(ctm.size):
        total += ctm[i] + math.log2(counts[i])
    return total


@njit(cache=True)
def ent_sum(counts):
    """Shannon entropy (bits) of ``counts``, summed in the given order as pybdm does."""
    total = 0
    for c in counts:
        total += c
    ent = 0.0
    for c in counts:
        p = c / total
        ent -= p * math.log2(p)
    return ent


@njit(cache=True)
def sorted_prefix_bdm(values, mult, n, total):
    """pybdm's most complex arrangement of ``n`` blocks.

    ``values`` sorted descending, each repeated ``mult`` times, is the cyclic sequence
    pybdm draws blocks from; item ``i`` of that sequence is drawn ``c_i`` times
    (``n`` spread round-robin) and contributes ``value_i + log2(c_i)``, added to
    ``total``.
    """
    total_len = 0
    for m in mult:
        total_len += m
    q = n // total_len
    r = n % total_len
    i = 0
    for t in range(values.size):
        for _ in range(mult[t]):
            c = q + 1 if i < r else q
            if c == 0:
                return total
            total += values[t] + math.log2(c)
            i += 1
    return total
