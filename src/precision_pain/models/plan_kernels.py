"""The compiled loop of :mod:`precision_pain.models.plan_scoring` (numba; imported on first
use and cached on disk as :mod:`precision_pain.models.treeshap_kernels` is)."""

import numpy as np

from precision_pain.models.treeshap_kernels import _jit


@_jit(nogil=True)
def score_plans(X, condition, rows, out, node_feature, node_threshold, node_default_left,
                node_left, node_right, node_value, node_mask, tree_root,
                left_masks):  # pragma: no cover - compiled
    """Add every tree's leaf values to ``out[i, p]`` for the plans p of row i that reach
    them (``rows[i]``: the bitset of row i's plans); see plan_scoring's docstring."""
    # Rows go through the trees in blocks: a tree's nodes are read from memory once per
    # block and from cache for the block's other rows (a model's nodes are megabytes; one
    # row at a time through every tree would fetch them all again for each row). Each row
    # still sums its trees in tree order, so the block size does not change the sums.
    block = 64
    words = rows.shape[1]
    depth = 128
    stack_node = np.empty(depth, np.int64)
    stack_mask = np.empty((depth, words), np.uint64)
    cur = np.empty(words, np.uint64)
    n_plans = out.shape[1]
    acc = np.empty((block, n_plans), np.float64)
    common = np.empty(block, np.float64)
    for first_row in range(0, X.shape[0], block):
        nb = min(block, X.shape[0] - first_row)
        acc[:, :] = 0.0
        common[:] = 0.0
        for t in range(tree_root.shape[0]):
            for b in range(nb):
                i = first_row + b
                code = condition[i]
                stack_node[0] = tree_root[t]
                for w in range(words):
                    stack_mask[0, w] = rows[i, w]
                sp = 1
                while sp > 0:
                    sp -= 1
                    node = stack_node[sp]
                    for w in range(words):
                        cur[w] = stack_mask[sp, w]
                    while node_left[node] >= 0:
                        m = node_mask[node]
                        if m < 0:  # a patient feature: the whole set goes one way
                            value = X[i, node_feature[node]]
                            if np.isnan(value):
                                left = node_default_left[node] == 1
                            else:
                                left = value < node_threshold[node]
                            node = node_left[node] if left else node_right[node]
                            continue
                        # a plan column: the set divides by the split's mask for this condition
                        any_left = False
                        any_right = False
                        for w in range(words):
                            lm = cur[w] & left_masks[code, m, w]
                            rm = cur[w] & ~left_masks[code, m, w]
                            stack_mask[sp, w] = rm
                            cur[w] = lm
                            if lm != 0:
                                any_left = True
                            if rm != 0:
                                any_right = True
                        if any_left and any_right:  # the right set waits on the stack
                            stack_node[sp] = node_right[node]
                            sp += 1
                            node = node_left[node]
                        elif any_left:
                            node = node_left[node]
                        else:
                            for w in range(words):
                                cur[w] = stack_mask[sp, w]
                            node = node_right[node]
                    # a leaf: every plan of the set gets its value
                    v = node_value[node]
                    full = True
                    for w in range(words):
                        if cur[w] != rows[i, w]:
                            full = False
                    if full:
                        common[b] += v
                    else:  # v times each plan's bit: a branch-free loop the compiler vectorizes
                        for w in range(words):
                            bits = cur[w]
                            if bits == 0:
                                continue
                            base = w * 64
                            for j in range(min(64, n_plans - base)):
                                acc[b, base + j] += v * np.float64(
                                    (bits >> np.uint64(j)) & np.uint64(1))
        for b in range(nb):
            for p in range(out.shape[1]):
                out[first_row + b, p] += acc[b, p] + common[b]
