"""Numba kernels of momos: the KD-tree of motifs behind exact nearest-motif search.

Called only from :mod:`momos.assign`, which validates the inputs (float64, C-contiguous,
distinct motifs) and resolves the near-ties these kernels flag.
"""

import numpy as np
from numba import njit, prange

# The motifs go into a KD-tree (median splits on the widest coordinate, leaves of at most
# ``leaf`` points, tight bounding boxes and the cell of every leaf). Each block is sent
# down to the leaf whose cell holds it; the blocks are then searched grouped by that
# leaf, so consecutive searches touch the same nodes and points (cache). A search scans
# the block's own leaf; if the ball around the block out to the best distance lies inside
# the cell, no other leaf can hold a closer motif and the search is over (most blocks in
# 1-2-D); otherwise a depth-first walk from the root visits every node whose box comes
# within that distance. Like the cKDTree path, the walk prunes at the best distance with
# a near-tie margin, tracks the second best, and flags blocks where the two are within
# a relative margin (``rel``): those go to the brute force in momos.assign.


@njit(cache=True)
def kd_build(U, leaf):  # pragma: no cover - compiled
    n, s = U.shape
    cap = 2 * (n // max(1, (leaf + 1) // 2)) + 3  # leaves hold >= (leaf + 1) // 2 points
    perm = np.arange(n)
    start = np.empty(cap, np.int64)
    end = np.empty(cap, np.int64)
    left = np.full(cap, -1, np.int64)
    right = np.full(cap, -1, np.int64)
    sdim = np.zeros(cap, np.int64)
    sval = np.zeros(cap)
    lo = np.empty((cap, s))
    hi = np.empty((cap, s))
    n_nodes = 1
    start[0] = 0
    end[0] = n
    stack = np.empty(256, np.int64)
    stack[0] = 0
    sp = 1
    vals = np.empty(n)
    while sp > 0:
        sp -= 1
        node = stack[sp]
        a = start[node]
        b = end[node]
        for d in range(s):
            mn = np.inf
            mx = -np.inf
            for t in range(a, b):
                v = U[perm[t], d]
                mn = min(mn, v)
                mx = max(mx, v)
            lo[node, d] = mn
            hi[node, d] = mx
        widest = 0
        spread = -1.0
        for d in range(s):
            if hi[node, d] - lo[node, d] > spread:
                spread = hi[node, d] - lo[node, d]
                widest = d
        if b - a <= leaf or spread <= 0.0:
            continue
        for t in range(a, b):
            vals[t] = U[perm[t], widest]
        sub = perm[a:b][np.argsort(vals[a:b], kind="mergesort")]
        perm[a:b] = sub
        mid = (a + b) // 2
        lc = n_nodes
        rc = n_nodes + 1
        n_nodes += 2
        start[lc] = a
        end[lc] = mid
        start[rc] = mid
        end[rc] = b
        left[node] = lc
        right[node] = rc
        sdim[node] = widest
        sval[node] = U[perm[mid], widest]  # left points <= sval <= right points
        stack[sp] = lc
        stack[sp + 1] = rc
        sp += 2
    # Cells: a block goes left iff its coordinate < sval, so the left cell ends at sval
    # and the right cell starts there. Children are numbered after their parent.
    clo = np.full((n_nodes, s), -np.inf)
    chi = np.full((n_nodes, s), np.inf)
    n_leaves = 0
    for node in range(n_nodes):
        lc = left[node]
        if lc < 0:
            n_leaves += 1
            continue
        rc = right[node]
        for d in range(s):
            clo[lc, d] = clo[node, d]
            chi[lc, d] = chi[node, d]
            clo[rc, d] = clo[node, d]
            chi[rc, d] = chi[node, d]
        chi[lc, sdim[node]] = sval[node]
        clo[rc, sdim[node]] = sval[node]
    leaves = np.empty(n_leaves, np.int64)
    leaf_no = np.full(n_nodes, -1, np.int64)
    c = 0
    for node in range(n_nodes):
        if left[node] < 0:
            leaves[c] = node
            leaf_no[node] = c
            c += 1
    pts = np.empty((s, n))  # the points in tree order, one row per coordinate
    for t in range(n):
        for d in range(s):
            pts[d, t] = U[perm[t], d]
    return (perm, pts, start[:n_nodes].copy(), end[:n_nodes].copy(),
            left[:n_nodes].copy(), right[:n_nodes].copy(), sdim[:n_nodes].copy(),
            sval[:n_nodes].copy(), lo[:n_nodes].copy(), hi[:n_nodes].copy(), clo, chi,
            leaves, leaf_no)


@njit(cache=True, parallel=True)
def kd_home(B, left, sdim, sval, right, leaf_no):  # pragma: no cover - compiled
    m = B.shape[0]
    home = np.empty(m, np.int64)
    for i in prange(m):
        node = 0
        while left[node] >= 0:
            node = left[node] if B[i, sdim[node]] < sval[node] else right[node]
        home[i] = leaf_no[node]
    return home


@njit(cache=True)
def kd_group(home, n_leaves):  # pragma: no cover - compiled
    """Counting sort of the blocks by home leaf: ``order`` and ``offsets`` (CSR)."""
    m = home.shape[0]
    offsets = np.zeros(n_leaves + 1, np.int64)
    for i in range(m):
        offsets[home[i] + 1] += 1
    for j in range(n_leaves):
        offsets[j + 1] += offsets[j]
    pos = offsets[:-1].copy()
    order = np.empty(m, np.int64)
    for i in range(m):
        order[pos[home[i]]] = i
        pos[home[i]] += 1
    return order, offsets


@njit(inline="always")
def _kd_scan(q, pts, a, n, dist, d1, d2, j1):  # pragma: no cover - compiled
    """Fold the points ``a .. a+n-1`` into the best ``(d1, j1)`` and second best ``d2``."""
    for t in range(n):
        dist[t] = 0.0
    for d in range(q.shape[0]):
        qd = q[d]
        for t in range(n):
            x = qd - pts[d, a + t]
            dist[t] += x * x
    for t in range(n):
        v = dist[t]
        if v < d2:
            if v < d1:
                d2 = d1
                d1 = v
                j1 = a + t
            else:
                d2 = v
    return d1, d2, j1


@njit(cache=True, parallel=True)
def kd_search(B, perm, pts, start, end, left, right, lo, hi, clo, chi, leaves, order,
               offsets, n_chunks, max_leaf, rel, tiny):  # pragma: no cover - compiled
    m, s = B.shape
    n_leaves = leaves.shape[0]
    best = np.empty(m, np.int64)
    near = np.empty(m, np.bool_)
    bounds = np.empty(n_chunks + 1, np.int64)  # leaf ranges with equal numbers of blocks
    bounds[0] = 0
    bounds[n_chunks] = n_leaves
    j = 0
    for c in range(1, n_chunks):
        while j < n_leaves and offsets[j] < c * m // n_chunks:
            j += 1
        bounds[c] = j
    for c in prange(n_chunks):
        stack = np.empty(256, np.int64)
        stack_d = np.empty(256)
        dist = np.empty(max_leaf)
        q = np.empty(s)
        for li in range(bounds[c], bounds[c + 1]):
            home = leaves[li]
            for t in range(offsets[li], offsets[li + 1]):
                i = order[t]
                for d in range(s):
                    q[d] = B[i, d]
                d1, d2, j1 = _kd_scan(q, pts, start[home], end[home] - start[home], dist,
                                      np.inf, np.inf, -1)
                reach = d1 * (1.0 + 4.0 * rel) + 4.0 * tiny  # what may still matter
                inside = True  # is the ball of radius sqrt(reach) inside the home cell?
                for d in range(s):
                    x = q[d] - clo[home, d]
                    y = chi[home, d] - q[d]
                    lim = reach * (1.0 + 4.0 * rel)
                    if not (x > 0.0 and y > 0.0 and x * x > lim and y * y > lim):
                        inside = False
                if not inside:
                    sp = 1
                    stack[0] = 0
                    stack_d[0] = 0.0
                    while sp > 0:
                        sp -= 1
                        if stack_d[sp] > reach:
                            continue
                        node = stack[sp]
                        lc = left[node]
                        if lc < 0:
                            if node != home:
                                d1, d2, j1 = _kd_scan(q, pts, start[node],
                                                      end[node] - start[node], dist, d1, d2, j1)
                                reach = d1 * (1.0 + 4.0 * rel) + 4.0 * tiny
                            continue
                        rc = right[node]
                        dl = 0.0
                        dr = 0.0
                        for d in range(s):
                            x = q[d]
                            y = max(lo[lc, d] - x, x - hi[lc, d], 0.0)
                            dl += y * y
                            y = max(lo[rc, d] - x, x - hi[rc, d], 0.0)
                            dr += y * y
                        if dl <= dr:  # push the nearer child last: it is visited first
                            if dr <= reach:
                                stack[sp] = rc
                                stack_d[sp] = dr
                                sp += 1
                            if dl <= reach:
                                stack[sp] = lc
                                stack_d[sp] = dl
                                sp += 1
                        else:
                            if dl <= reach:
                                stack[sp] = lc
                                stack_d[sp] = dl
                                sp += 1
                            if dr <= reach:
                                stack[sp] = rc
                                stack_d[sp] = dr
                                sp += 1
                best[i] = perm[j1]
                near[i] = d2 <= d1 * (1.0 + 2.0 * rel) + tiny
    return best, near
