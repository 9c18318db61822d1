"""Exact TreeSHAP for xgboost boosters, from per-leaf tables.

The values are those of xgboost's ``pred_contribs`` (path-dependent TreeSHAP: Lundberg, Erion
et al. 2020, "From local explanations to global understanding with explainable AI for
trees", Nature Machine Intelligence 2:56-67, Algorithm 2), computed a faster way: the
"Fast TreeSHAP v2" idea of Yang 2022 ("Fast TreeSHAP: Accelerating SHAP value computation
for trees", arXiv:2109.09847). A leaf's share of feature j's SHAP value depends on the
explained row only through which of the split conditions on the leaf's path the row
satisfies, so for every leaf and every such pattern it is computed once, when the booster is
loaded; explaining a row is then a table look-up per leaf, O(leaves x depth) per tree
instead of O(leaves x depth^2).

For a leaf with value v whose path tests the distinct features U, let z_k be the product of
cover(child on the path) / cover(node) over the path's nodes that test feature k, and o_k = 1
if the row satisfies all of them (else 0). The leaf's part of the SHAP value of j in U is the
Shapley value of the game f(S) = v prod_{k in S} o_k prod_{k in U \\ S} z_k:

    phi_j = v (o_j - z_j) sum_{S subset U \\ {j}} |S|! (|U| - |S| - 1)! / |U|!
            prod_{k in S} o_k prod_{k in U \\ S \\ {j}} z_k

(features off the path get nothing from the leaf). The bias is the boosters' expected value,
taken from xgboost itself. The tables hold 2^depth x |U| values per leaf; a model whose
tables would exceed :data:`MAX_TABLE_VALUES`, or with a path longer than
:data:`MAX_TABLE_DEPTH`, is explained by xgboost's ``pred_contribs`` instead (the same
values, slower). :func:`shap_values` agrees with ``pred_contribs`` to
float32 rounding (tests/test_treeshap.py).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from math import factorial
from typing import Any, Sequence

import numpy as np

# 2^25 float64 values = 256 MiB of tables; the default cohort's 1,000-tree depth-4 response
# classifier needs 0.66 million, its 1,000-tree companion 0.85 million.
MAX_TABLE_VALUES = 1 << 25
# The kernel holds a row's pattern for a leaf in a byte: paths of at most 8 splits. Deeper
# trees (2^9 table rows per leaf and up) are explained by pred_contribs.
MAX_TABLE_DEPTH = 8


@dataclass(frozen=True)
class ShapTables:
    """Every leaf's SHAP table, for one booster or a weighted sum of boosters.

    Nodes are numbered tree by tree, each tree breadth first (parents before children)."""

    n_features: int
    bias: float
    node_feature: np.ndarray       # int32 (nodes,): the split's feature
    node_threshold: np.ndarray     # float32: the row goes left when value < threshold
    node_default_left: np.ndarray  # uint8: where a missing value goes
    node_parent: np.ndarray        # int32: the parent's index within the tree; -1 = root
    node_bit: np.ndarray           # int8: the parent's depth d, ~d if the node is a right child
    node_leaf: np.ndarray          # int64: the leaf's number; -1 = a split
    tree_nodes: np.ndarray         # int64: tree t's nodes are [tree_nodes[t], tree_nodes[t + 1])
    leaf_slots: np.ndarray         # int8 (leaves,): distinct features on the leaf's path
    slot_feature: np.ndarray       # int32 (leaves, max depth): each distinct feature
    table_start: np.ndarray        # int64: the leaf's table is [start, start + 2^depth x slots)
    table: np.ndarray              # float64: row "pattern" (bit k: the row satisfies the
    #                                path's k-th split), column "slot"


class Explainer:
    """Exact TreeSHAP of ``sum_i weights[i] * booster_i + offset`` (margins), bias last.

    The tables are built on the first call (once per loaded model and process; safe to call
    from several threads). A model too large for them is explained by xgboost's
    ``pred_contribs``: the same values, slower."""

    def __init__(self, boosters: Sequence[Any], weights: Sequence[float] | None = None,
                 offset: float = 0.0):
        self.boosters = list(boosters)
        self.weights = [1.0] * len(self.boosters) if weights is None else list(weights)
        self.offset = float(offset)
        self._lock = threading.Lock()
        self._tables: ShapTables | None = None
        self._built = False

    def __getstate__(self) -> dict[str, Any]:
        return {"boosters": self.boosters, "weights": self.weights, "offset": self.offset}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["boosters"], state["weights"], state["offset"])

    @property
    def tables(self) -> ShapTables | None:
        """The tables (None: too large, xgboost explains)."""
        with self._lock:
            if not self._built:
                self._tables = build_tables(self.boosters, self.weights, self.offset)
                self._built = True
        return self._tables

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """(n, features + 1) float64 SHAP values of the rows of X (a float matrix)."""
        tables = self.tables
        if tables is not None:
            return shap_values(tables, X, threads=None)
        import xgboost as xgb

        matrix = xgb.DMatrix(np.asarray(X, np.float32),
                             feature_names=self.boosters[0].feature_names)
        phi = sum(w * booster.predict(matrix, pred_contribs=True).astype(np.float64)
                  for booster, w in zip(self.boosters, self.weights))
        phi[:, -1] += self.offset
        return phi

    def grouped(self, X: np.ndarray, group: int, n_shared: int) -> np.ndarray:
        """:meth:`__call__` of rows in groups of ``group`` that share their first
        ``n_shared`` columns (:func:`shap_values_grouped`): the same values, faster."""
        tables = self.tables
        if tables is not None:
            return shap_values_grouped(tables, X, group, n_shared, threads=None)
        return self(X)


def available_cores() -> int:
    """The cores this process may run on (as xgboost's default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_SIDE_BY_SIDE = 0  # threads of work inside sharing_cores() now
_SIDE_BY_SIDE_LOCK = threading.Lock()


@contextmanager
def sharing_cores() -> Iterator[None]:
    """Mark the calling thread as one of several that compute side by side (predict's single
    treatments and its plans): while n such threads run, each compiled-kernel call gets
    1/n of the cores (:func:`kernel_threads`) instead of all of them, so that the halves do
    not start more threads than there are cores and evict each other's trees from cache;
    once one half is done, the other's calls get every core again. The numbers do not
    depend on the thread count."""
    global _SIDE_BY_SIDE
    with _SIDE_BY_SIDE_LOCK:
        _SIDE_BY_SIDE += 1
    try:
        yield
    finally:
        with _SIDE_BY_SIDE_LOCK:
            _SIDE_BY_SIDE -= 1


def kernel_threads() -> int:
    """Threads for one call of a compiled kernel: the process's cores, shared between the
    threads inside :func:`sharing_cores` (all of them when there are none)."""
    return max(1, available_cores() // max(1, _SIDE_BY_SIDE))


def table_size(booster) -> int:
    """The number of table values :func:`build_tables` would hold for ``booster``."""
    return sum(int(_tree_arrays(tree, 1.0)["table_size"].sum()) for tree in booster_trees(booster))


def build_tables(boosters: Sequence, weights: Sequence[float] | None = None,
                 offset: float = 0.0) -> ShapTables | None:
    """The tables of ``sum_i weights[i] * booster_i + offset`` (margins), or None when they
    would exceed :data:`MAX_TABLE_VALUES` (then use xgboost's ``pred_contribs``)."""
    weights = [1.0] * len(boosters) if weights is None else [float(w) for w in weights]
    n_features = {booster.num_features() for booster in boosters}
    if len(n_features) != 1:
        raise ValueError(f"the boosters read different numbers of features: {n_features}")
    parts = [_tree_arrays(tree, w) for booster, w in zip(boosters, weights)
             for tree in booster_trees(booster)]
    if (sum(int(p["table_size"].sum()) for p in parts) > MAX_TABLE_VALUES
            or max(int(p["depth"].max(initial=0)) for p in parts) > MAX_TABLE_DEPTH):
        return None
    nodes = np.cumsum([0] + [len(p["feature"]) for p in parts]).astype(np.int64)
    leaves = np.cumsum([0] + [len(p["leaf_value"]) for p in parts]).astype(np.int64)
    depth = max([p["path_slot"].shape[1] for p in parts] + [1])
    node_leaf = np.concatenate([np.where(p["leaf"] >= 0, p["leaf"] + leaves[t], -1)
                                for t, p in enumerate(parts)])
    leaf_depth = np.concatenate([p["depth"] for p in parts]).astype(np.int64)
    leaf_slots = np.concatenate([p["slots"] for p in parts]).astype(np.int8)
    path_slot = _stack([p["path_slot"] for p in parts], depth, np.int8)
    cover_ratio = _stack([p["cover_ratio"] for p in parts], depth, np.float64, fill=1.0)
    sizes = np.concatenate([p["table_size"] for p in parts])
    table_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    table = np.zeros(int(table_start[-1]), np.float64)
    from precision_pain.models import treeshap_kernels as kernels

    kernels.fill_tables(leaf_depth, path_slot, leaf_slots, cover_ratio,
                 np.concatenate([p["leaf_value"] for p in parts]), table_start, table,
                 _shapley_weights(depth))
    bias = offset + sum(w * _expected_margin(b) for b, w in zip(boosters, weights))
    return ShapTables(
        n_features=n_features.pop(), bias=float(bias),
        node_feature=np.concatenate([p["feature"] for p in parts]).astype(np.int32),
        node_threshold=np.concatenate([p["threshold"] for p in parts]).astype(np.float32),
        node_default_left=np.concatenate([p["default_left"] for p in parts]).astype(np.uint8),
        node_parent=np.concatenate([p["parent"] for p in parts]).astype(np.int32),
        node_bit=np.concatenate([p["bit"] for p in parts]).astype(np.int8),
        node_leaf=node_leaf.astype(np.int64), tree_nodes=nodes, leaf_slots=leaf_slots,
        slot_feature=_stack([p["slot_feature"] for p in parts], depth, np.int32),
        table_start=table_start, table=table)


def shap_values(tables: ShapTables, X: np.ndarray, threads: int | None = 1) -> np.ndarray:
    """(n, n_features + 1) SHAP values of the rows of X (bias last), as ``pred_contribs``.

    X is cast to float32, as xgboost reads it (NaN = missing). ``threads`` > 1 splits the
    rows between threads (the kernel releases the GIL); None follows :func:`kernel_threads`
    (:func:`in_row_blocks`)."""
    return _explain(tables, _matrix(tables, X), 1, 0, threads)


def shap_values_grouped(tables: ShapTables, X: np.ndarray, group: int, n_shared: int,
                        threads: int | None = 1) -> np.ndarray:
    """:func:`shap_values` of rows that come in consecutive groups of ``group`` sharing their
    first ``n_shared`` columns (a patient's options: rows ``p * group + k``, k = 0..group-1,
    hold patient p's features and option k's columns). The same values, with the work of
    the splits and leaves reached through shared columns only done once per group.

    Raises ValueError when the rows do not come in such groups."""
    X = _matrix(tables, X)
    if group < 1 or len(X) % group or not 0 <= n_shared <= tables.n_features:
        raise ValueError(f"{len(X)} rows do not make groups of {group} sharing {n_shared} of "
                         f"{tables.n_features} columns")
    X3 = X.reshape(len(X) // group, group, tables.n_features)
    shared = X3[:, :, :n_shared]
    if not np.array_equal(shared, np.broadcast_to(X3[:, :1, :n_shared], shared.shape),
                          equal_nan=True):
        raise ValueError(f"the rows of a group differ in their first {n_shared} columns")
    return _explain(tables, X, group, n_shared, threads)


def _matrix(tables: ShapTables, X: np.ndarray) -> np.ndarray:
    """X as the float32 matrix the kernel reads; ValueError if its width is not the model's."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != tables.n_features:
        raise ValueError(f"expected a (rows, {tables.n_features}) matrix, got {X.shape}")
    return X


def _explain(tables: ShapTables, X: np.ndarray, group: int, n_shared: int,
             threads: int | None) -> np.ndarray:
    """The kernel over X's groups of ``group`` rows (checked by the callers)."""
    from precision_pain.models.treeshap_kernels import explain

    n = len(X) // group
    # (feature, member, group): the kernel reads each feature's groups contiguously
    XT = np.ascontiguousarray(X.reshape(n, group, tables.n_features).transpose(2, 1, 0))
    out = np.zeros((n, group, tables.n_features + 1), np.float64)
    out[:, :, -1] = tables.bias
    args = _kernel_args(tables)
    in_row_blocks(lambda lo, hi: explain(XT, lo, hi, out, n_shared, *args), n, threads)
    return out.reshape(n * group, tables.n_features + 1)


def _kernel_args(tables: ShapTables) -> tuple:
    """The tables' arrays in the kernels' argument order, and the largest tree's size."""
    return (tables.node_feature, tables.node_threshold, tables.node_default_left,
            tables.node_parent, tables.node_bit, tables.node_leaf, tables.tree_nodes,
            tables.leaf_slots, tables.slot_feature, tables.table_start, tables.table,
            int(np.diff(tables.tree_nodes).max(initial=1)))


# rows per chunk of a call whose thread count follows kernel_threads
CHUNK_ROWS = 1024


def in_row_blocks(work: Any, n: int, threads: int | None = None) -> None:
    """``work(lo, hi)`` over ``threads`` contiguous blocks of ``n`` rows (at least 64 rows
    each), on threads when there is more than one block (the numba kernels release the GIL).

    ``threads`` None: the rows go in chunks of :data:`CHUNK_ROWS`, each split by
    :func:`kernel_threads` when it starts, so that a long call picks up the cores another
    half of the prediction frees (:func:`sharing_cores`). Each row's numbers are the same
    whatever the split."""
    if threads is not None:
        _blocks(work, 0, n, threads)
        return
    for lo in range(0, max(n, 1), CHUNK_ROWS):
        _blocks(work, lo, min(n, lo + CHUNK_ROWS), kernel_threads())


def _blocks(work: Any, lo: int, hi: int, threads: int) -> None:
    """``work`` over ``threads`` contiguous blocks of rows lo..hi (at least 64 rows each)."""
    bounds = np.linspace(lo, hi, max(1, min(threads, (hi - lo) // 64)) + 1).astype(int)
    blocks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    if len(blocks) == 1:
        work(*blocks[0])
        return
    with ThreadPoolExecutor(len(blocks)) as pool:
        list(pool.map(lambda block: work(*block), blocks))


def booster_trees(booster) -> list[dict]:
    """A single-output gbtree booster's trees, as xgboost's JSON model holds them."""
    model = json.loads(bytes(booster.save_raw("json")))["learner"]
    gbm = model["gradient_booster"]
    if gbm["name"] != "gbtree" or int(model["learner_model_param"].get("num_target", 1)) > 1:
        raise ValueError("exact TreeSHAP tables support single-output gbtree boosters")
    if any(any(tree["split_type"]) for tree in gbm["model"]["trees"]):
        raise ValueError("exact TreeSHAP tables do not support categorical splits")
    return gbm["model"]["trees"]


def _tree_arrays(tree: dict, weight: float) -> dict[str, np.ndarray]:
    """One tree's nodes breadth first, and its leaves' paths (in that order)."""
    left = tree["left_children"]
    right = tree["right_children"]
    feature = tree["split_indices"]
    cover = tree["sum_hessian"]
    order = [0]
    parent = [-1]
    bit = [0]
    paths: list[list[tuple[int, bool]]] = [[]]
    for i, node in enumerate(order):  # grows while it is read: breadth first
        if left[node] != -1:
            for child, went_left in ((left[node], True), (right[node], False)):
                depth = len(paths[i])
                order.append(child)
                parent.append(i)
                bit.append(depth if went_left else ~depth)
                paths.append(paths[i] + [(node, went_left)])
    is_leaf = np.array([left[node] == -1 for node in order])
    leaf = np.full(len(order), -1, np.int64)
    leaf[is_leaf] = np.arange(int(is_leaf.sum()))
    leaf_paths = [paths[i] for i in np.flatnonzero(is_leaf)]
    d = max([len(p) for p in leaf_paths] + [1])
    path_slot = np.zeros((len(leaf_paths), d), np.int8)
    cover_ratio = np.ones((len(leaf_paths), d), np.float64)
    slot_feature = np.zeros((len(leaf_paths), d), np.int32)
    slots = np.zeros(len(leaf_paths), np.int64)
    for j, path in enumerate(leaf_paths):
        seen: dict[int, int] = {}
        for k, (node, went_left) in enumerate(path):
            slot = seen.setdefault(feature[node], len(seen))
            path_slot[j, k] = slot
            slot_feature[j, slot] = feature[node]
            child = left[node] if went_left else right[node]
            cover_ratio[j, k] = cover[child] / cover[node]
        slots[j] = len(seen)
    depth = np.array([len(p) for p in leaf_paths], np.int64)
    values = np.asarray(tree["split_conditions"], np.float64)[order]
    return {"feature": np.asarray(feature)[order], "parent": np.asarray(parent),
            "threshold": np.asarray(tree["split_conditions"], np.float32)[order],
            "default_left": np.asarray(tree["default_left"])[order],
            "bit": np.asarray(bit), "leaf": leaf, "depth": depth, "slots": slots,
            "path_slot": path_slot, "cover_ratio": cover_ratio, "slot_feature": slot_feature,
            "leaf_value": weight * values[is_leaf], "table_size": (1 << depth) * slots}


def _stack(blocks: list[np.ndarray], width: int, dtype, fill: float = 0) -> np.ndarray:
    """Row-stack 2-D blocks, each padded on the right to ``width`` columns."""
    out = np.full((sum(len(b) for b in blocks), width), fill, dtype)
    row = 0
    for block in blocks:
        out[row:row + len(block), :block.shape[1]] = block
        row += len(block)
    return out


def _shapley_weights(depth: int) -> np.ndarray:
    """w[u, s] = s! (u - s - 1)! / u!: the weight of a coalition of s of the other u - 1."""
    w = np.zeros((depth + 1, depth + 1))
    for u in range(1, depth + 1):
        for s in range(u):
            w[u, s] = factorial(s) * factorial(u - s - 1) / factorial(u)
    return w


def _expected_margin(booster) -> float:
    """The booster's bias term (base margin + each tree's cover-weighted mean leaf)."""
    import xgboost as xgb

    row = xgb.DMatrix(np.zeros((1, booster.num_features()), np.float32),
                      feature_names=booster.feature_names)
    return float(booster.predict(row, pred_contribs=True)[0, -1])
