"""The table-driven exact TreeSHAP (models/treeshap.py) gives xgboost's own values."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import xgboost as xgb

from precision_pain.models import treeshap

# xgboost sums its SHAP values in float32; the tables sum in float64.
ATOL = 2e-5


def _data(n: int = 600, p: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    X[:, -1] = rng.integers(0, 2, n)  # a binary column, as the treatment indicators
    X[rng.random((n, p)) < 0.1] = np.nan  # missing values take each split's default
    margin = np.nan_to_num(X[:, 0] * X[:, -1] + np.abs(X[:, 1]) - (X[:, 0] > 0.5))
    return X, (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(float)


def _booster(X: np.ndarray, y: np.ndarray, objective: str = "binary:logistic",
             depth: int = 4, rounds: int = 40, seed: int = 0, **extra) -> xgb.Booster:
    params = {"objective": objective, "max_depth": depth, "eta": 0.3, "seed": seed,
              "nthread": 1, "subsample": 0.8, **extra}
    names = [f"f{i}" for i in range(X.shape[1])]
    return xgb.train(params, xgb.DMatrix(X, y, feature_names=names), rounds)


def _xgboost_shap(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(X, feature_names=booster.feature_names),
                           pred_contribs=True)


@pytest.mark.parametrize("depth", [1, 2, 4, 6])
@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror"])
def test_equals_pred_contribs(depth: int, objective: str) -> None:
    X, y = _data()
    booster = _booster(X, y, objective, depth)
    ours = treeshap.Explainer([booster])(X)
    np.testing.assert_allclose(ours, _xgboost_shap(booster, X), rtol=0, atol=ATOL)
    margin = booster.predict(xgb.DMatrix(X, feature_names=booster.feature_names),
                             output_margin=True)
    np.testing.assert_allclose(ours.sum(axis=1), margin, rtol=0, atol=ATOL)


def test_repeated_features_on_a_path() -> None:
    """Two features only: every deep path tests a feature more than once."""
    X, y = _data(p=2, seed=1)
    booster = _booster(X, y, depth=6, rounds=20)
    tables = treeshap.build_tables([booster])
    assert (tables.leaf_slots < 6).any()  # some paths repeat a feature
    np.testing.assert_allclose(treeshap.shap_values(tables, X), _xgboost_shap(booster, X),
                               rtol=0, atol=ATOL)


def test_trees_without_a_split() -> None:
    """A huge min_child_weight leaves every tree a single leaf: all in the bias."""
    X, y = _data()
    booster = _booster(X, y, rounds=5, min_child_weight=1e9)
    ours = treeshap.Explainer([booster])(X[:50])
    np.testing.assert_allclose(ours, _xgboost_shap(booster, X[:50]), rtol=0, atol=ATOL)
    assert np.all(ours[:, :-1] == 0)


def test_weighted_sum_of_boosters() -> None:
    """a + b f + c g: the stacked pooled model's score (b phi_f + c phi_g, a in the bias)."""
    X, y = _data()
    f = _booster(X, y, depth=4, rounds=30)
    g = _booster(X, np.nan_to_num(X[:, 0]), "reg:squarederror", depth=3, rounds=25, seed=3)
    ours = treeshap.Explainer([f, g], [0.8, -1.7], 0.25)(X)
    expected = 0.8 * _xgboost_shap(f, X) - 1.7 * _xgboost_shap(g, X)
    expected[:, -1] += 0.25
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)


def test_threads_give_the_same_numbers() -> None:
    X, y = _data(n=1000)
    tables = treeshap.build_tables([_booster(X, y)])
    one = treeshap.shap_values(tables, X, threads=1)
    assert np.array_equal(one, treeshap.shap_values(tables, X, threads=2))
    assert np.array_equal(one[:7], treeshap.shap_values(tables, X[:7], threads=2))


def _grouped_rows(n: int = 700, group: int = 3, shared: int = 6, seed: int = 4
                  ) -> np.ndarray:
    """n groups of ``group`` rows: the first ``shared`` columns (missing values among them)
    the same within a group, the others (options' columns) differing."""
    X, _ = _data(n=n, seed=seed)
    rows = np.repeat(X, group, axis=0)
    rng = np.random.default_rng(seed)
    rows[:, shared:] = rng.integers(0, 2, (len(rows), X.shape[1] - shared))
    rows[rng.random(len(rows)) < 0.05, -1] = np.nan
    return rows


@pytest.mark.parametrize("group", [1, 2, 3, 5])
def test_groups_sharing_columns_give_the_same_values(group: int) -> None:
    """Rows in groups that share their first columns (a patient's options) are explained
    once per group where only those columns decide: xgboost's values, the ungrouped
    kernel's to float64 rounding, over several blocks of groups and thread splits."""
    X, y = _data()
    y = (np.nan_to_num(X[:, 0]) + X[:, -1] * np.nan_to_num(X[:, 1]) > 0).astype(float)
    booster = _booster(X, y, depth=5, rounds=30)
    rows = _grouped_rows(group=group)
    tables = treeshap.build_tables([booster])
    plain = treeshap.shap_values(tables, rows)
    grouped = treeshap.shap_values_grouped(tables, rows, group, 6)
    np.testing.assert_allclose(grouped, plain, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grouped, _xgboost_shap(booster, rows), rtol=0, atol=ATOL)
    assert np.array_equal(grouped, treeshap.shap_values_grouped(tables, rows, group, 6,
                                                                threads=3))
    assert np.array_equal(treeshap.Explainer([booster]).grouped(rows, group, 6), grouped)
    # nothing shared (every column an option's) and everything shared are the plain values
    np.testing.assert_allclose(treeshap.shap_values_grouped(tables, rows, group, 0), plain,
                               rtol=0, atol=1e-12)
    same = np.repeat(rows[::group], group, axis=0)
    np.testing.assert_allclose(treeshap.shap_values_grouped(tables, same, group, 8),
                               treeshap.shap_values(tables, same), rtol=0, atol=1e-12)


def test_groups_that_do_not_share_their_columns_are_refused() -> None:
    X, y = _data()
    tables = treeshap.build_tables([_booster(X, y)])
    rows = _grouped_rows(n=50)
    rows[4, 2] += 1.0  # the second group's middle row: another patient
    with pytest.raises(ValueError, match="differ in their first 6 columns"):
        treeshap.shap_values_grouped(tables, rows, 3, 6)
    with pytest.raises(ValueError, match="do not make groups of 4"):
        treeshap.shap_values_grouped(tables, rows, 4, 6)
    with pytest.raises(ValueError, match="do not make groups"):
        treeshap.shap_values_grouped(tables, rows, 3, 9)


def test_too_large_for_tables_falls_back_to_xgboost(monkeypatch) -> None:
    X, y = _data()
    booster = _booster(X, y)
    monkeypatch.setattr(treeshap, "MAX_TABLE_VALUES", treeshap.table_size(booster) - 1)
    explainer = treeshap.Explainer([booster], [2.0], 1.0)
    assert explainer.tables is None
    expected = 2.0 * _xgboost_shap(booster, X)
    expected[:, -1] += 1.0
    np.testing.assert_allclose(explainer(X), expected, rtol=0, atol=ATOL)


def test_paths_of_eight_splits_use_the_tables_and_deeper_ones_fall_back() -> None:
    """A row's pattern for a leaf is a byte in the kernel: depth 8 (bit 7) still exact from
    the tables, a deeper tree explained by pred_contribs."""
    X, y = _data(n=3000, p=12)
    deep8 = _booster(X, y, depth=8, rounds=15)
    assert max(int(treeshap._tree_arrays(t, 1.0)["depth"].max())
               for t in treeshap.booster_trees(deep8)) == 8  # some path has 8 splits
    assert treeshap.build_tables([deep8]) is not None
    np.testing.assert_allclose(treeshap.Explainer([deep8])(X), _xgboost_shap(deep8, X),
                               rtol=0, atol=ATOL)
    deep10 = _booster(X, y, depth=10, rounds=5)
    assert max(int(treeshap._tree_arrays(t, 1.0)["depth"].max())
               for t in treeshap.booster_trees(deep10)) > 8
    explainer = treeshap.Explainer([deep10])
    assert explainer.tables is None
    np.testing.assert_allclose(explainer(X), _xgboost_shap(deep10, X), rtol=0, atol=ATOL)


def test_pickles_without_its_tables() -> None:
    X, y = _data()
    explainer = treeshap.Explainer([_booster(X, y)])
    before = explainer(X[:20])
    copy = pickle.loads(pickle.dumps(explainer))
    assert not copy._built
    assert np.array_equal(copy(X[:20]), before)


def test_refuses_a_matrix_of_the_wrong_width() -> None:
    X, y = _data()
    tables = treeshap.build_tables([_booster(X, y)])
    with pytest.raises(ValueError, match=r"\(rows, 8\)"):
        treeshap.shap_values(tables, X[:, :5])


def test_compiles_where_no_cache_folder_can_be_written(monkeypatch) -> None:
    """numba refuses cache=True when it finds no writable folder: compile without it."""
    import importlib

    import numba

    from precision_pain.models import treeshap_kernels

    real = numba.njit

    def njit(*args, cache=False, **options):
        if cache:
            raise RuntimeError("cannot cache function 'explain': no locator available")
        return real(*args, **options)

    X, y = _data()
    booster = _booster(X, y, rounds=5)
    monkeypatch.setattr(numba, "njit", njit)
    try:
        importlib.reload(treeshap_kernels)
        np.testing.assert_allclose(treeshap.Explainer([booster])(X[:30]),
                                   _xgboost_shap(booster, X[:30]), rtol=0, atol=ATOL)
    finally:
        monkeypatch.setattr(numba, "njit", real)
        importlib.reload(treeshap_kernels)


def test_threads_side_by_side_share_the_cores(monkeypatch) -> None:
    """predict's two halves run inside sharing_cores: each kernel call gets its share of
    the cores while both run, and every core again once one is done (or fails)."""
    import threading

    monkeypatch.setattr(treeshap, "available_cores", lambda: 4)
    assert treeshap.kernel_threads() == 4
    inside = threading.Event()
    leave = threading.Event()

    def other_half() -> None:
        with treeshap.sharing_cores():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other_half)
    with treeshap.sharing_cores():
        assert treeshap.kernel_threads() == 4  # alone so far
        thread.start()
        assert inside.wait(10)
        assert treeshap.kernel_threads() == 2
        leave.set()
        thread.join(10)
        assert treeshap.kernel_threads() == 4
    with pytest.raises(RuntimeError), treeshap.sharing_cores():
        raise RuntimeError("a failed half")
    assert treeshap.kernel_threads() == 4
    monkeypatch.setattr(treeshap, "available_cores", lambda: 1)
    with treeshap.sharing_cores(), treeshap.sharing_cores():
        assert treeshap.kernel_threads() == 1  # never fewer than one


def test_a_long_call_picks_up_the_cores_that_free_up(monkeypatch) -> None:
    """threads=None: the rows go chunk by chunk, each split by kernel_threads when it starts
    (a half of predict gets the cores the other half has finished with); same numbers."""
    X, y = _data(n=1000)
    tables = treeshap.build_tables([_booster(X, y)])
    one = treeshap.shap_values(tables, X, threads=1)
    monkeypatch.setattr(treeshap, "CHUNK_ROWS", 200)
    counts = iter([1, 2])
    monkeypatch.setattr(treeshap, "kernel_threads", lambda: next(counts))
    blocks: list[tuple[int, int]] = []
    treeshap.in_row_blocks(lambda lo, hi: blocks.append((lo, hi)), 350)
    assert sorted(blocks) == [(0, 200), (200, 275), (275, 350)]
    cycle = iter([2, 1, 2, 1, 2, 1])  # five chunks of 200 rows, then the empty call
    monkeypatch.setattr(treeshap, "kernel_threads", lambda: next(cycle))
    assert np.array_equal(treeshap.shap_values(tables, X, threads=None), one)
    empty: list[tuple[int, int]] = []
    treeshap.in_row_blocks(lambda lo, hi: empty.append((lo, hi)), 0)
    assert empty == [(0, 0)]  # the kernel still runs once (and adds nothing)
