"""The compiled loops of :mod:`precision_pain.models.treeshap` (numba; imported on first
use, so that commands that explain nothing do not load numba). Compiled once and cached on
disk beside this file or in numba's user cache folder (``NUMBA_CACHE_DIR``); where neither
is writable, compiled in each process instead (a few seconds)."""

import numba
import numpy as np


def _jit(**options):
    """``numba.njit`` with the on-disk cache when a cache folder can be written."""
    def decorate(function):
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # numba found no writable cache folder
            return numba.njit(**options)(function)
    return decorate


@_jit()
def fill_tables(depth, path_slot, leaf_slots, cover_ratio, values, table_start, table,
                weights):  # pragma: no cover - compiled
    """Every leaf's table: for each pattern of satisfied splits, each distinct feature's
    share of the leaf's value (the formula in treeshap's docstring)."""
    d_max = path_slot.shape[1]
    z = np.empty(d_max)
    o = np.empty(d_max)
    poly = np.empty(d_max + 1)
    for leaf in range(len(depth)):
        d = depth[leaf]
        u = leaf_slots[leaf]
        for s in range(u):
            z[s] = 1.0
        for k in range(d):
            z[path_slot[leaf, k]] *= cover_ratio[leaf, k]
        for pattern in range(1 << d):
            for s in range(u):
                o[s] = 1.0
            for k in range(d):
                if not (pattern >> k) & 1:
                    o[path_slot[leaf, k]] = 0.0
            base = table_start[leaf] + pattern * u
            for j in range(u):
                # coefficients of prod_{k != j} (z_k + o_k x): poly[s] sums the products
                # over coalitions of s of the other features
                poly[0] = 1.0
                m = 0
                for k in range(u):
                    if k == j:
                        continue
                    m += 1
                    poly[m] = 0.0
                    for s in range(m, 0, -1):
                        poly[s] = poly[s] * z[k] + poly[s - 1] * o[k]
                    poly[0] *= z[k]
                total = 0.0
                for s in range(u):
                    total += weights[u, s] * poly[s]
                table[base + j] = values[leaf] * (o[j] - z[j]) * total


@_jit(nogil=True)
def explain(XT, lo, hi, out, n_shared, node_feature, node_threshold, node_default_left,
            node_parent, node_bit, node_leaf, tree_nodes, leaf_slots, slot_feature,
            table_start, table, max_nodes):  # pragma: no cover - compiled
    """Add the SHAP values of groups ``lo:hi`` to ``out[lo:hi]``. ``XT`` holds the rows as
    (features, group member, group); ``out`` is (group, member, features + 1). The members
    of a group share their first ``n_shared`` features (a patient's options: the same
    patient columns, different option columns; groups of one row are plain rows): per
    tree, the pattern of every leaf's path, then the leaf table's row for it. A split on a
    shared feature sends every member of a group the same way, and a node whose path holds
    only such splits is reached with the same pattern: those steps, and those leaves' table
    reads, are done once per group rather than once per member."""
    # Rows go through the trees in blocks, so that a tree's nodes and tables are read from
    # cache once per block rather than from memory once per row. Within a block every
    # array is indexed [node or feature, member, group], so each step runs over contiguous
    # groups (vectorized loops), and the SHAP values collect in a block-sized accumulator.
    # Patterns are bytes (paths of at most 8 splits), so a vector step handles the most rows.
    block = 128
    n_features = XT.shape[0]
    g = XT.shape[1]
    go_left = np.empty((max_nodes, g, block), np.uint8)
    pattern = np.empty((max_nodes, g, block), np.uint8)  # depth <= 8 (build_tables)
    go_shared = np.empty(max_nodes, np.bool_)    # the split's feature is shared
    path_shared = np.empty(max_nodes, np.bool_)  # every split above the node is
    acc = np.empty((n_features, g, block))
    acc_shared = np.empty((n_features, block))
    for first_group in range(lo, hi, block):
        nb = min(block, hi - first_group)
        acc[:, :, :] = 0.0
        acc_shared[:, :] = 0.0
        for t in range(len(tree_nodes) - 1):
            first = tree_nodes[t]
            # nodes come parents first: a node's pattern is its parent's, plus the bit of
            # the parent's position on the path when the row goes the node's way there
            for n in range(first, tree_nodes[t + 1]):
                i = n - first
                parent = node_parent[n]
                leaf = node_leaf[n]
                if parent < 0:
                    path_shared[i] = True
                    for r in range(nb):
                        pattern[i, 0, r] = np.uint8(0)
                else:
                    bit = node_bit[n]
                    went_left = np.uint8(1) if bit >= 0 else np.uint8(0)
                    shift = np.uint8(bit if bit >= 0 else ~bit)
                    path_shared[i] = path_shared[parent] and go_shared[parent]
                    if path_shared[i]:
                        for r in range(nb):
                            pattern[i, 0, r] = pattern[parent, 0, r] | (
                                np.uint8(go_left[parent, 0, r] == went_left) << shift)
                    else:
                        for k in range(g):
                            kp = 0 if path_shared[parent] else k
                            kg = 0 if go_shared[parent] else k
                            for r in range(nb):
                                pattern[i, k, r] = pattern[parent, kp, r] | (
                                    np.uint8(go_left[parent, kg, r] == went_left) << shift)
                if leaf < 0:
                    feature = node_feature[n]
                    threshold = node_threshold[n]
                    default = node_default_left[n]
                    go_shared[i] = feature < n_shared
                    for k in range(1 if go_shared[i] else g):
                        for r in range(nb):
                            value = XT[feature, k, first_group + r]
                            go_left[i, k, r] = np.uint8(value < threshold) | (
                                np.uint8(value != value) & default)
                else:
                    u = leaf_slots[leaf]
                    start = table_start[leaf]
                    if path_shared[i]:
                        for s in range(u):
                            feature = slot_feature[leaf, s]
                            for r in range(nb):
                                acc_shared[feature, r] += table[start + pattern[i, 0, r] * u + s]
                    else:
                        for k in range(g):
                            for s in range(u):
                                feature = slot_feature[leaf, s]
                                for r in range(nb):
                                    acc[feature, k, r] += table[start + pattern[i, k, r] * u + s]
        for r in range(nb):
            for k in range(g):
                for f in range(n_features):
                    out[first_group + r, k, f] += acc[f, k, r] + acc_shared[f, r]
