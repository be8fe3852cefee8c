"""Numba kernels of the block decomposition: block keys, counting, canonical keys.

Blocks are encoded as integers of ``bits`` bits per symbol read row-major with the first
symbol most significant (at most 4 x 16 bits), so decoding needs shifts, not divisions.
Distinct blocks are counted in order of first appearance, the order in which pybdm's
``Counter`` adds them, so sums match pybdm to the last bit: in a direct-address table
where the key space is small, else in an open-addressing hash table.

Inputs are validated by the callers in ``bdm.py``: these kernels assume ``uint8``
symbols below ``2**bits``, C-contiguous arrays and in-range geometry. Every kernel also runs
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
def count_1d(x, start, stop, size, step, bits, tkeys, tids, ukeys, ucounts, n):
    """Count the windows ``x[s:s+size]`` for ``s = start, start+step, ...``, ``s+size <= stop``."""
    s = start
    while s + size <= stop:
        if 2 * (n + 1) > tkeys.size:
            tkeys, tids, ukeys, ucounts = _grow(tkeys, tids, ukeys, ucounts, n)
        key = 0
        for j in range(s, s + size):
            key = (key << bits) | int(x[j])
        n = _insert(key, 1, tkeys, tids, ukeys, ucounts, n)
        s += step
    return tkeys, tids, ukeys, ucounts, n


@njit(cache=True)
def count_2d(x, r0, c0, height, width, size, step, bits, tkeys, tids, ukeys, ucounts, n):
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
                    key = (key << bits) | int(x[i, j])
            n = _insert(key, 1, tkeys, tids, ukeys, ucounts, n)
            c += step
        r += step
    return tkeys, tids, ukeys, ucounts, n


@njit(cache=True)
def dense_1d(x, start, stop, size, step, bits, counts, first, seq):
    """Like :func:`count_1d` into a direct-address table: ``counts[key]``, and in
    ``first[key]`` the sequence number of the key's first block. Returns the next one."""
    s = start
    while s + size <= stop:
        key = 0
        for j in range(s, s + size):
            key = (key << bits) | int(x[j])
        if counts[key] == 0:
            first[key] = seq
        counts[key] += 1
        seq += 1
        s += step
    return seq


@njit(cache=True)
def dense_2d(x, r0, c0, height, width, size, step, bits, counts, first, seq):
    """Like :func:`count_2d` into a direct-address table (see :func:`dense_1d`)."""
    r = r0
    while r + size <= r0 + height:
        c = c0
        while c + size <= c0 + width:
            key = 0
            for i in range(r, r + size):
                for j in range(c, c + size):
                    key = (key << bits) | int(x[i, j])
            if counts[key] == 0:
                first[key] = seq
            counts[key] += 1
            seq += 1
            c += step
        r += step
    return seq


@njit(cache=True)
def merge_counts(keys, counts, tkeys, tids, ukeys, ucounts, n):
    """Add ``counts`` of ``keys`` (in order) into a hash-counter state."""
    for i in range(keys.size):
        if 2 * (n + 1) > tkeys.size:
            tkeys, tids, ukeys, ucounts = _grow(tkeys, tids, ukeys, ucounts, n)
        n = _insert(keys[i], counts[i], tkeys, tids, ukeys, ucounts, n)
    return tkeys, tids, ukeys, ucounts, n


@njit(cache=True)
def rgs_completions(length, n_labels):
    """``f[i, m]``: ways to fill positions ``i..length-1`` of a canonical key (a restricted
    growth string) with at most ``n_labels`` labels when ``m`` labels are in use."""
    f = np.zeros((length + 1, n_labels + 2), dtype=np.int64)
    f[length, :] = 1
    for i in range(length - 1, 0, -1):
        for m in range(1, n_labels + 1):
            f[i, m] = m * f[i + 1, m]
            if m < n_labels:
                f[i, m] += f[i + 1, m + 1]
    return f


@njit(cache=True)
def rank_canonical(digits, f):
    """Lexicographic rank of each canonical key (a row of ``digits``) among all canonical
    keys of its length: a dense index into the CTM values, so lookups need no search."""
    out = np.empty(digits.shape[0], dtype=np.int64)
    for row in range(digits.shape[0]):
        m = 1
        r = 0
        for i in range(1, digits.shape[1]):
            d = int(digits[row, i])
            r += d * f[i + 1, m]
            if d == m:
                m += 1
        out[row] = r
    return out


@njit(cache=True)
def ctm_of_keys(keys, length, bits, f, values, missing):
    """CTM value of each raw block key: relabel its symbols in order of first appearance
    (``40524 -> 01230``), rank that canonical key, read the dense table (NaN: absent)."""
    out = np.empty(keys.size, dtype=np.float64)
    label = np.empty(1 << bits, dtype=np.int64)
    mask = (1 << bits) - 1
    for t in range(keys.size):
        key = keys[t]
        label[:] = -1
        m = 0
        r = 0
        for i in range(length):
            d = label[(key >> (bits * (length - 1 - i))) & mask]
            if d < 0:
                d = m
                label[(key >> (bits * (length - 1 - i))) & mask] = m
            if i > 0:
                r += d * f[i + 1, m]
            if d == m:
                m += 1
        v = values[r]
        out[t] = missing if np.isnan(v) else v
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
