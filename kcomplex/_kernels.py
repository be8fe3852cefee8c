"""Numba kernels of kcomplex: block keys, counting and CTM lookups for BDM, and the
sorted-run counts behind the entropy estimator.

Blocks are encoded as integers of ``bits`` bits per symbol read row-major with the first
symbol most significant (at most 48 bits), so decoding needs shifts, not divisions.
Distinct blocks are counted in order of first appearance, the order in which pybdm's
``Counter`` adds them, so sums match pybdm to the last bit: in a direct-address table
where the key space is small, in first-seen bitmaps up to 24-bit keys, else in
cache-sized hash tables over partitions of the keys; counts of pieces are merged in an
open-addressing hash table. CTM values are read at the rank of the canonical key, from
two small tables where they fit in the CPU caches, else computed symbol by symbol.

Inputs are validated by the callers in ``bdm.py``: these kernels assume ``uint8``
symbols below ``2**bits``, C-contiguous arrays and in-range geometry. Every kernel also runs
as plain Python under ``NUMBA_DISABLE_JIT=1`` (the test suite does that). The kernels
called from Python release the GIL (``nogil=True``): :func:`kcomplex.analyze` runs
tensors and estimators on a thread pool.
"""

import math

import numpy as np
from numba import njit

_EMPTY = -1
_MIX = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: Fibonacci hashing


def new_table(expected: int):
    """Empty hash-counter state for about ``expected`` distinct keys.

    ``slots[h] = (key, count, id)`` keeps what one probe needs in one cache line; ``id``
    numbers keys in order of first appearance and ``order[id]`` is the key.
    """
    cap = 16
    while cap < 2 * expected:
        cap *= 2
    slots = np.zeros((cap, 3), dtype=np.int64)
    slots[:, 0] = _EMPTY
    return slots, np.zeros(cap // 2, dtype=np.int64), 0


@njit(cache=True)
def _slot(key, mask):
    h = int(key) * _MIX
    return (h ^ (h >> 29)) & mask


@njit(cache=True)
def _grow(slots, order, n):
    cap = slots.shape[0] * 2
    mask = cap - 1
    grown = np.zeros((cap, 3), dtype=np.int64)
    grown[:, 0] = _EMPTY
    for old in range(slots.shape[0]):
        if slots[old, 0] != _EMPTY:
            h = _slot(slots[old, 0], mask)
            while grown[h, 0] != _EMPTY:
                h = (h + 1) & mask
            grown[h, :] = slots[old, :]
    longer = np.zeros(cap // 2, dtype=np.int64)
    longer[:n] = order[:n]
    return grown, longer


@njit(cache=True)
def _insert(key, count, slots, order, n):
    """Add ``count`` to ``key``; returns the new number of distinct keys."""
    mask = slots.shape[0] - 1
    h = _slot(key, mask)
    while True:
        k = slots[h, 0]
        if k == key:
            slots[h, 1] += count
            return n
        if k == _EMPTY:
            slots[h, 0] = key
            slots[h, 1] = count
            slots[h, 2] = n
            order[n] = key
            return n + 1
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def table_counts(slots, n):
    """Counts of the ``n`` keys of a hash-counter state, in order of first appearance."""
    out = np.zeros(n, dtype=np.int64)
    for h in range(slots.shape[0]):
        if slots[h, 0] != _EMPTY:
            out[slots[h, 2]] = slots[h, 1]
    return out


@njit(cache=True, nogil=True)
def block_keys_1d(x, start, stop, size, step, bits):
    """Keys of the windows ``x[s:s+size]``, ``s = start, start+step, ...``, ``s+size <= stop``."""
    n = max(0, (stop - start - size) // step + 1)
    keys = np.empty(n, dtype=np.int64)
    s = start
    for t in range(n):
        key = 0
        for j in range(s, s + size):
            key = (key << bits) | int(x[j])
        keys[t] = key
        s += step
    return keys


@njit(cache=True, nogil=True)
def count_keys(keys, key_bits):
    """Distinct keys in order of first appearance, with their counts.

    One stable scatter of the keys into 4,096 partitions by their top bits, then a hash
    table per partition small enough to stay in cache: a single table for a million
    distinct keys would miss the cache on every insert.
    """
    n = keys.size
    part_bits = min(12, key_bits)
    shift = key_bits - part_bits
    n_parts = 1 << part_bits
    start = np.zeros(n_parts + 1, dtype=np.int64)
    for i in range(n):
        start[(keys[i] >> shift) + 1] += 1
    for p in range(n_parts):
        start[p + 1] += start[p]
    part_keys = np.empty(n, dtype=np.int64)
    part_pos = np.empty(n, dtype=np.int64)
    fill = start[:n_parts].copy()
    for i in range(n):
        p = keys[i] >> shift
        part_keys[fill[p]] = keys[i]
        part_pos[fill[p]] = i
        fill[p] += 1
    distinct_at = np.full(n, -1, dtype=np.int64)  # position of a first appearance -> id
    d_keys = np.empty(n, dtype=np.int64)
    d_counts = np.empty(n, dtype=np.int64)
    n_distinct = 0
    slot_keys = np.empty(16, dtype=np.int64)
    slot_ids = np.empty(16, dtype=np.int64)
    for p in range(n_parts):
        lo, hi = start[p], start[p + 1]
        cap = 16
        while cap < 2 * (hi - lo):
            cap *= 2
        if cap > slot_keys.size:
            slot_keys = np.empty(cap, dtype=np.int64)
            slot_ids = np.empty(cap, dtype=np.int64)
        for h in range(cap):
            slot_keys[h] = _EMPTY
        mask = cap - 1
        for j in range(lo, hi):  # positions ascend within a partition: the scatter is stable
            key = part_keys[j]
            h = _slot(key, mask)
            while slot_keys[h] != _EMPTY and slot_keys[h] != key:
                h = (h + 1) & mask
            if slot_keys[h] == key:
                d_counts[slot_ids[h]] += 1
            else:
                slot_keys[h] = key
                slot_ids[h] = n_distinct
                d_keys[n_distinct] = key
                d_counts[n_distinct] = 1
                distinct_at[part_pos[j]] = n_distinct
                n_distinct += 1
    out_keys = np.empty(n_distinct, dtype=np.int64)
    out_counts = np.empty(n_distinct, dtype=np.int64)
    t = 0
    for i in range(n):
        d = distinct_at[i]
        if d >= 0:
            out_keys[t] = d_keys[d]
            out_counts[t] = d_counts[d]
            t += 1
    return out_keys, out_counts


@njit(cache=True, nogil=True)
def dense_1d(x, start, stop, size, step, bits, counts, first, seq):
    """Count the windows of :func:`block_keys_1d` in a direct-address table: ``counts[key]``, and in
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


@njit(cache=True, nogil=True)
def dense_2d(x, r0, c0, height, width, size, step, bits, counts, first, seq):
    """Count the ``size x size`` windows of ``x[r0:r0+height, c0:c0+width]``, row-major,
    with top-left corners on a grid of pitch ``step``, as :func:`dense_1d` does."""
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
def _see(keys, counts, m, seen, multi, firsts, n, rep_counts):
    """Add ``counts`` of ``keys[:m]`` to the bitmaps of a first-seen state: keys not seen
    before go to ``firsts[n:]``; the rest of the counts, moved to the front of ``keys``
    and ``rep_counts``, are for the caller to add to the hash counter of repeats.
    Returns ``n`` and the number of those repeats."""
    r = 0
    for t in range(m):
        key = keys[t]
        c = counts[t]
        byte = key >> 3
        bit = 1 << (key & 7)
        old = seen[byte]
        if not old & bit:
            seen[byte] = old | bit
            firsts[n] = key
            n += 1
            c -= 1
            if c == 0:
                continue
        multi[byte] |= bit
        keys[r] = key
        rep_counts[r] = c
        r += 1
    return n, r


@njit(cache=True, nogil=True)
def seen_1d(x, start, stop, size, step, bits, seen, multi, firsts, n, slots, order, n_rep):
    """Count the windows of :func:`block_keys_1d` in a first-seen state, for key spaces
    too large for :func:`dense_1d` but small enough for a bitmap (2 MB at 24 bits).

    ``seen`` and ``multi`` are bitmaps over the keys (bytes of 8 keys): a key not yet
    seen is appended to ``firsts[n:]`` (the caller leaves room for every window); a key
    seen before is marked in ``multi`` and its extra count goes to a hash-counter state,
    which stays small when blocks repeat little (a random 4-symbol string: 20,179 of
    812,790 distinct blocks repeat), so most blocks cost one bitmap probe instead of a
    hash probe. Returns ``n, slots, order, n_rep``.

    Keys are made 1,024 at a time into a buffer, then looked up: in one loop, the
    stores into the bitmaps (bytes, as the symbols are) keep the compiler from
    optimizing the reads of the symbols."""
    buf = np.empty(1024, dtype=np.int64)
    ones = np.ones(buf.size, dtype=np.int64)
    rep_counts = np.empty(buf.size, dtype=np.int64)
    s = start
    while s + size <= stop:
        m = min(buf.size, (stop - s - size) // step + 1)
        for t in range(m):
            key = 0
            for j in range(s, s + size):
                key = (key << bits) | int(x[j])
            buf[t] = key
            s += step
        n, r = _see(buf, ones, m, seen, multi, firsts, n, rep_counts)
        if r:
            slots, order, n_rep = merge_counts(buf[:r], rep_counts[:r], slots, order, n_rep)
    return n, slots, order, n_rep


@njit(cache=True, nogil=True)
def seen_counts(keys, counts, seen, multi, firsts, n, slots, order, n_rep):
    """Add ``counts`` of ``keys`` (in order) to a first-seen state, as :func:`seen_1d`."""
    reps = keys.copy()
    rep_counts = np.empty(keys.size, dtype=np.int64)
    n, r = _see(reps, counts, keys.size, seen, multi, firsts, n, rep_counts)
    slots, order, n_rep = merge_counts(reps[:r], rep_counts[:r], slots, order, n_rep)
    return n, slots, order, n_rep


@njit(cache=True, nogil=True)
def seen_result(multi, firsts, n, slots):
    """Counts of ``firsts[:n]`` of a first-seen state: 1, plus the extra count of the
    keys marked in ``multi``."""
    out = np.ones(n, dtype=np.int64)
    mask = slots.shape[0] - 1
    for i in range(n):
        key = firsts[i]
        if multi[key >> 3] & (1 << (key & 7)):
            h = _slot(key, mask)
            while slots[h, 0] != key:
                h = (h + 1) & mask
            out[i] += slots[h, 1]
    return out


@njit(cache=True, nogil=True)
def merge_counts(keys, counts, slots, order, n):
    """Add ``counts`` of ``keys`` (in order) into a hash-counter state."""
    for i in range(keys.size):
        if 2 * (n + 1) > slots.shape[0]:
            slots, order = _grow(slots, order, n)
        n = _insert(keys[i], counts[i], slots, order, n)
    return slots, order, n


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


@njit(cache=True, nogil=True)
def ctm_of_keys(keys, length, bits, f, values, missing):
    """CTM value of each raw block key: relabel its symbols in order of first appearance
    (``40524 -> 01230``), rank that canonical key, read the dense table (NaN: absent).

    Branch-free: which symbols are new is random, and mispredicted branches cost more
    than the table reads here."""
    out = np.empty(keys.size, dtype=np.float64)
    ranks = np.empty(keys.size, dtype=np.int64)
    label = np.empty(1 << bits, dtype=np.int64)
    mask = (1 << bits) - 1
    for t in range(keys.size):
        key = keys[t]
        for q in range(label.size):  # a loop: a slice assignment costs a view per key
            label[q] = -1
        m = 0
        r = 0
        for i in range(length):
            sym = (key >> (bits * (length - 1 - i))) & mask
            old = label[sym]
            new = old < 0
            d = m if new else old
            label[sym] = d
            r += d * f[i + 1, m]  # d = 0 at i = 0, so f[1, 0] never counts
            m += new
        ranks[t] = r
    # The table reads in a loop of their own: they overlap there, not inside the above.
    for t in range(keys.size):
        v = values[ranks[t]]
        out[t] = v if v == v else missing
    return out


@njit(cache=True)
def split_rank_tables(length, bits, n_symbols, f, split):
    """Tables that rank a raw block key of ``length`` symbols in two reads: the rank of
    its canonical key is ``pre_rank[h] + suf_rank[pre_off[h] + s]`` for the key's first
    ``split`` symbols ``h`` and the others ``s``.

    ``pre_*`` rank the first symbols and name the labels they leave in use (a state:
    which symbols got which labels); ``suf_rank`` ranks the other symbols from each
    state. Rows of keys with symbols ``>= n_symbols`` are left 0 (no block has them)."""
    suf_len = length - split
    n_pre = 1 << (bits * split)
    n_suf = 1 << (bits * suf_len)
    mask = (1 << bits) - 1
    base = n_symbols + 1
    pre_rank = np.zeros(n_pre, dtype=np.int64)
    codes = np.full(n_pre, -1, dtype=np.int64)  # the state of each prefix, as a number
    label = np.empty(n_symbols, dtype=np.int64)
    for h in range(n_pre):
        for q in range(n_symbols):
            label[q] = -1
        m, r, valid = _rank_digits(h, split, 0, bits, mask, n_symbols, f, label, 0)
        if valid:
            pre_rank[h] = r
            code = 0
            for q in range(n_symbols):
                code = code * base + label[q] + 1
            codes[h] = code
    states = np.unique(codes[codes >= 0])
    pre_off = np.searchsorted(states, codes) * n_suf
    for h in range(n_pre):
        if codes[h] < 0:
            pre_off[h] = 0
    suf_rank = np.zeros(states.size * n_suf, dtype=np.int64)
    for state in range(states.size):
        for suffix in range(n_suf):
            code = states[state]
            m0 = 0
            for q in range(n_symbols - 1, -1, -1):
                label[q] = code % base - 1
                m0 += label[q] >= 0
                code //= base
            r = _rank_digits(suffix, suf_len, split, bits, mask, n_symbols, f, label, m0)[1]
            suf_rank[state * n_suf + suffix] = r
    return pre_rank, pre_off, suf_rank


@njit(cache=True)
def _rank_digits(key, n_digits, first, bits, mask, n_symbols, f, label, m):
    """Rank terms of the ``n_digits`` symbols of ``key`` at positions ``first, ...`` of a
    block, labels in ``label`` (updated) and ``m`` of them in use; returns ``m, rank,
    valid`` (``valid`` false for a symbol ``>= n_symbols``)."""
    r = 0
    for i in range(n_digits):
        sym = (key >> (bits * (n_digits - 1 - i))) & mask
        if sym >= n_symbols:
            return m, r, False
        d = label[sym]
        if d < 0:
            d = m
            label[sym] = m
        r += d * f[first + i + 1, m]
        m += d == m
    return m, r, True


@njit(cache=True, nogil=True)
def ctm_by_tables(keys, suf_bits, pre_rank, pre_off, suf_rank, values, missing):
    """CTM value of each raw block key ranked by :func:`split_rank_tables` (``suf_bits``:
    the bits of the suffix), NaN in ``values`` read as ``missing``."""
    out = np.empty(keys.size, dtype=np.float64)
    mask = (1 << suf_bits) - 1
    for t in range(keys.size):
        key = keys[t]
        h = key >> suf_bits
        v = values[pre_rank[h] + suf_rank[pre_off[h] + (key & mask)]]
        out[t] = v if v == v else missing
    return out


@njit(cache=True, nogil=True)
def bdm_sum(ctm, counts, total):
    """``total`` plus ``ctm + log2(count)`` in the given order, as pybdm adds them (a
    count of 1 adds ``ctm + 0.0``, that is ``ctm``, without calling ``log2``)."""
    for i in range(ctm.size):
        c = counts[i]
        total += ctm[i] if c == 1 else ctm[i] + math.log2(c)
    return total


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def sorted_runs(a):
    """Number of runs of equal values in a sorted array and the sum of ``c * log2(c)``
    over their lengths ``c``: an order-0 code length without materializing the counts."""
    if a.size == 0:
        return 0, 0.0
    runs = 0
    total = 0.0
    start = 0
    for i in range(1, a.size + 1):
        if i == a.size or a[i] != a[start]:
            c = i - start
            total += c * math.log2(c)
            runs += 1
            start = i
    return runs, total


@njit(cache=True, nogil=True)
def gather_bucket(u, mask, bucket, out, pos):
    """Copy the elements of ``u`` with ``u & mask == bucket`` to ``out[pos:]``; returns
    the next free position."""
    for i in range(u.size):
        if u[i] & mask == bucket:
            out[pos] = u[i]
            pos += 1
    return pos


# --- Lempel-Ziv ----------------------------------------------------------------------------


@njit(cache=True)
def _edge(state, edges, v, c):
    """The edge of state ``v`` labelled ``c``, or -1."""
    e = state[v, 2]
    while e != -1 and edges[e, 0] != c:
        e = edges[e, 2]
    return e


@njit(cache=True)
def _add_edge(state, edges, n_edges, v, c, target):
    edges[n_edges, 0] = c
    edges[n_edges, 1] = target
    edges[n_edges, 2] = state[v, 2]
    state[v, 2] = n_edges
    return n_edges + 1


@njit(cache=True, nogil=True)
def lz76_phrases(x):
    """Kaspar-Schuster (LZ76) phrase count of the symbols ``x`` (labels ``0..k-1``).

    Each phrase is the longest prefix of the rest that starts somewhere earlier (the
    copy may overlap the phrase), plus one new symbol; the last phrase may be a bare
    copy. Kaspar and Schuster's scan finds the longest copy by trying every earlier
    start, quadratic in ``len(x)``; here the phrase ``w`` (a suffix of ``x[:j]``) grows
    by ``x[j]`` while ``w + x[j]`` is a substring of ``x[:j]``, asked of a suffix
    automaton of ``x[:j]`` built online: linear time, at most ``2 len(x)`` states and
    ``3 len(x)`` edges, kept in lists so that any alphabet fits.

    ``state[v] = (length, suffix link, first edge)`` and ``edges[e] = (symbol, target,
    next edge)``: rows, so that a visit reads one cache line. ``w``'s state ``v`` is
    kept as the automaton grows: a suffix of the string it was built on, ``w`` can only
    move to the clone that an extension splits off ``v``, which becomes ``v``'s link.
    """
    n = x.size
    if n == 0:
        return 0
    state = np.empty((2 * n + 1, 3), dtype=np.int32)
    state[0, 0], state[0, 1], state[0, 2] = 0, -1, -1
    edges = np.empty((3 * n + 2, 3), dtype=np.int32)
    n_states, n_edges, last = 1, 0, 0
    v, w, count = 0, 0, 0
    for j in range(n):
        c = int(x[j])
        e = _edge(state, edges, v, c)
        if e >= 0:
            v = edges[e, 1]
            w += 1
        else:
            count += 1
            v, w = 0, 0
        # Extend the automaton by c (the textbook construction).
        cur = n_states
        n_states += 1
        state[cur, 0] = state[last, 0] + 1
        state[cur, 2] = -1
        p = last
        while p != -1 and _edge(state, edges, p, c) == -1:
            n_edges = _add_edge(state, edges, n_edges, p, c, cur)
            p = state[p, 1]
        if p == -1:
            state[cur, 1] = 0
        else:
            q = edges[_edge(state, edges, p, c), 1]
            if state[p, 0] + 1 == state[q, 0]:
                state[cur, 1] = q
            else:
                clone = n_states
                n_states += 1
                state[clone, 0] = state[p, 0] + 1
                state[clone, 1] = state[q, 1]
                state[clone, 2] = -1
                f = state[q, 2]
                while f != -1:
                    n_edges = _add_edge(state, edges, n_edges, clone, edges[f, 0], edges[f, 1])
                    f = edges[f, 2]
                while p != -1:
                    f = _edge(state, edges, p, c)
                    if f == -1 or edges[f, 1] != q:
                        break
                    edges[f, 1] = clone
                    p = state[p, 1]
                state[q, 1] = clone
                state[cur, 1] = clone
        last = cur
        while w > 0 and w <= state[state[v, 1], 0]:
            v = state[v, 1]
    return count + (w > 0)


@njit(cache=True, nogil=True)
def lz78_phrases(x):
    """LZ78 parse of the symbols ``x``: the number of whole phrases (a phrase of the
    dictionary plus one symbol, added to the dictionary), and whether a last partial
    phrase (a bare dictionary phrase) follows them. The dictionary is a trie whose
    children are kept in lists: any alphabet fits in ``len(x) + 1`` nodes."""
    n = x.size
    child = np.full(n + 1, -1, dtype=np.int32)
    sibling = np.full(n + 1, -1, dtype=np.int32)
    sym = np.empty(n + 1, dtype=np.int32)
    n_nodes, node, count = 1, 0, 0
    for j in range(n):
        c = int(x[j])
        t = child[node]
        while t != -1 and sym[t] != c:
            t = sibling[t]
        if t != -1:
            node = t
        else:
            sym[n_nodes] = c
            sibling[n_nodes] = child[node]
            child[node] = n_nodes
            n_nodes += 1
            count += 1
            node = 0
    return count, node != 0
