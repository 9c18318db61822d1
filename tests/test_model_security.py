"""Crafted model files and tampered bundles are refused before any code of theirs runs.

Each crafted skops file tries to create a marker file under ``tmp_path`` through a different
node type. Every attack is first shown to be live (loading it with skops trusting everything
creates the marker), then shown to be refused by the project's loader with the marker absent.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from click.testing import CliRunner

from precision_pain.models.bundle import BundleError, load_bundle, manifest_sha256, save_bundle
from precision_pain.cli import main
from precision_pain.models.estimators import HistGBModel, LogisticModel, load_model
from precision_pain.models.propensity import LogisticPropensity
from precision_pain.models.safe_skops import ALLOWED_TYPES, UnsafeModelFileError, untrusted_types

PAYLOAD_MODULE = "pp_test_payload"
OUTCOME_COLUMNS = ["treatment", "pain_followup", "adverse_event"]


@pytest.fixture()
def marker(tmp_path, monkeypatch):
    """A marker path, and an importable payload module whose functions create it."""
    path = tmp_path / "marker"
    package = tmp_path / "payload_src"
    package.mkdir()
    (package / f"{PAYLOAD_MODULE}.py").write_text(textwrap.dedent(f"""
        MARKER = {str(path)!r}

        def touch(*args, **kwargs):
            open(MARKER, "w").write("payload ran")
            return args[0] if args else None

        def dump_rows(X, path=MARKER):
            import numpy
            numpy.savetxt(path, X)
            return X

        class Writer:
            def write(self, X):
                open(MARKER, "w").write("method payload ran")
                return X
    """))
    monkeypatch.syspath_prepend(str(package))
    sys.modules.pop(PAYLOAD_MODULE, None)
    yield path
    sys.modules.pop(PAYLOAD_MODULE, None)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"]).astype(np.float32)
    X.iloc[::13, 1] = np.nan
    y = (rng.random(400) < 1 / (1 + np.exp(-X["a"].to_numpy()))).astype(int)
    return X, y


@pytest.fixture()
def logistic_file(data, tmp_path):
    X, y = data
    (tmp_path / "legit").mkdir()
    return LogisticModel(C=1.0).fit(X, y, X, y).save(tmp_path / "legit" / "response")


# ------------------------------------------------------------ building crafted files

def _schema(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("schema.json"))


def _rewrite(path: Path, schema: dict, out: Path) -> Path:
    """Copy a skops zip with another schema.json (the arrays stay as they were)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = json.dumps(schema).encode() if name == "schema.json" else src.read(name)
            dst.writestr(name, data)
    return out


def _state(value) -> dict:
    """skops' own node tree for a plain value (tuple, dict, str...), without memo ids."""
    with zipfile.ZipFile(io.BytesIO(sio.dumps(value))) as archive:
        return _without_ids(json.loads(archive.read("schema.json")))


def _without_ids(node):
    """Drop skops' memo ids, which could collide with those of the file it goes into."""
    if isinstance(node, dict):
        return {k: _without_ids(v) for k, v in node.items() if k != "__id__"}
    if isinstance(node, list):
        return [_without_ids(v) for v in node]
    return node


def _reduce_node(module: str, name: str, args: tuple) -> dict:
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": _state(args)}


def _write_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('payload ran')"


def _craft_reduce_numpy_testing(legit: Path, marker: Path, out: Path) -> Path:
    """feature_names built by numpy.testing's runstring, which exec()s its argument."""
    schema = _schema(legit)
    schema["content"]["feature_names"] = _reduce_node(
        "numpy.testing._private.utils", "runstring", (_write_code(marker), {}))
    return _rewrite(legit, schema, out)


def _craft_reduce_sklearn_testing(legit: Path, marker: Path, out: Path) -> Path:
    """A scikit-learn test helper that runs Python source in a subprocess."""
    schema = _schema(legit)
    schema["content"]["feature_names"] = _reduce_node(
        "sklearn.utils._testing", "assert_run_python_script_without_output",
        (_write_code(marker), "(?s).*"))
    return _rewrite(legit, schema, out)


def _craft_array_with_callable_class(legit: Path, marker: Path, out: Path) -> Path:
    """An array node whose 'class' is a function: called with the array while loading."""
    schema = _schema(legit)
    with zipfile.ZipFile(legit) as archive:
        npy = next(n for n in archive.namelist() if n.endswith(".npy"))
    schema["content"]["feature_names"] = {
        "__class__": "touch", "__module__": PAYLOAD_MODULE, "__loader__": "NdArrayNode",
        "type": "numpy", "file": npy}
    return _rewrite(legit, schema, out)


def _craft_loss_node(legit: Path, marker: Path, out: Path) -> Path:
    """A loss node whose constructor is a function of the attacker's choosing."""
    schema = _schema(legit)
    schema["content"]["feature_names"] = {
        "__class__": "touch", "__module__": PAYLOAD_MODULE, "__loader__": "LossNode",
        "__reduce__": {"args": _state(("x",))}, "content": _state({})}
    return _rewrite(legit, schema, out)


def _craft_hidden_in_pipeline(legit: Path, marker: Path, out: Path) -> Path:
    """A real trained pipeline with one extra attribute that runs the payload."""
    schema = _schema(legit)
    steps = schema["content"]["estimator"]["content"]["content"]["steps"]["content"]
    logreg = steps[-1]["content"][1]["content"]
    logreg["content"]["_cache"] = _reduce_node("numpy.testing._private.utils", "runstring",
                                               (_write_code(marker), {}))
    key_types = logreg["key_types"]["content"]
    key_types.append(_without_ids(key_types[0]))  # the new key is a str like the others
    return _rewrite(legit, schema, out)


def _craft_function_transformer(data, marker: Path, out: Path) -> Path:
    """A fitted FunctionTransformer that writes the patients' feature matrix at predict time."""
    import importlib

    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    payload = importlib.import_module(PAYLOAD_MODULE)
    X, y = data
    pipe = make_pipeline(SimpleImputer(), FunctionTransformer(payload.dump_rows),
                         LogisticRegression()).fit(X.to_numpy(np.float64), y)
    marker.unlink(missing_ok=True)  # fitting ran the function once
    out.parent.mkdir(parents=True, exist_ok=True)
    sio.dump({"estimator": pipe, "feature_names": list(X.columns)}, out)
    return out


def _craft_method_node(data, marker: Path, out: Path) -> Path:
    """A bound method (method node) as a transformer's function, called at predict time."""
    import importlib

    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    payload = importlib.import_module(PAYLOAD_MODULE)
    X, y = data
    pipe = make_pipeline(SimpleImputer(), FunctionTransformer(payload.Writer().write),
                         LogisticRegression()).fit(X.to_numpy(np.float64), y)
    marker.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    sio.dump({"estimator": pipe, "feature_names": list(X.columns)}, out)
    return out


LOAD_TIME = {
    "reduce_numpy_testing": _craft_reduce_numpy_testing,
    "reduce_sklearn_testing": _craft_reduce_sklearn_testing,
    "array_callable_class": _craft_array_with_callable_class,
    "loss_node": _craft_loss_node,
    "hidden_in_pipeline": _craft_hidden_in_pipeline,
}
PREDICT_TIME = {
    "function_transformer": _craft_function_transformer,
    "method_node": _craft_method_node,
}


def _run_naively(path: Path, X: pd.DataFrame | None = None) -> None:
    """What a loader that trusts everything does: load, and predict if asked."""
    try:
        state = sio.load(path, trusted=sio.get_untrusted_types(file=path))
        if X is not None:
            state["estimator"].predict_proba(X.to_numpy(np.float64))
    except Exception:  # the payloads may break the model; the marker is what counts
        pass


@pytest.mark.parametrize("attack", sorted(LOAD_TIME))
def test_load_time_payload_is_live_and_refused(attack, logistic_file, marker, tmp_path):
    crafted = LOAD_TIME[attack](logistic_file, marker, tmp_path / "crafted" /
                                "response.logistic.skops")
    with pytest.raises(UnsafeModelFileError, match="never saves"):
        load_model(crafted)
    assert not marker.exists()
    _run_naively(crafted)
    assert marker.exists(), f"{attack}: the crafted file is not a live payload"


@pytest.mark.parametrize("attack", sorted(PREDICT_TIME))
def test_predict_time_payload_is_live_and_refused(attack, data, marker, tmp_path):
    crafted = PREDICT_TIME[attack](data, marker, tmp_path / "crafted" / "response.logistic.skops")
    with pytest.raises(UnsafeModelFileError, match="never saves"):
        load_model(crafted)
    assert not marker.exists()
    _run_naively(crafted, data[0])
    assert marker.exists(), f"{attack}: the crafted file is not a live payload"


def test_propensity_loader_refuses_crafted_files(data, marker, tmp_path):
    X, y = data
    legit = LogisticPropensity(C=1.0).fit(X, np.where(y == 1, "cbt", "nsaid")).save(
        tmp_path / "propensity")
    schema = _schema(legit)
    schema["content"]["classes"] = _reduce_node("numpy.testing._private.utils", "runstring",
                                                (_write_code(marker), {}))
    crafted = _rewrite(legit, schema, tmp_path / "crafted" / "propensity.logistic.skops")
    with pytest.raises(UnsafeModelFileError):
        LogisticPropensity.load(crafted)
    assert not marker.exists()


def test_an_unexpected_but_harmless_class_is_refused_after_loading(data, tmp_path):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    out = tmp_path / "response.logistic.skops"
    sio.dump({"estimator": LogisticRegression().fit(X.fillna(0).to_numpy(np.float64), y),
              "feature_names": list(X.columns)}, out)
    with pytest.raises(UnsafeModelFileError, match="expected a sklearn.pipeline.Pipeline"):
        load_model(out)


def test_names_must_be_strings(logistic_file, tmp_path):
    schema = _schema(logistic_file)
    schema["content"]["feature_names"] = _state([1, 2, 3])
    crafted = _rewrite(logistic_file, schema, tmp_path / "c" / "response.logistic.skops")
    with pytest.raises(UnsafeModelFileError, match="feature_names must be a list of strings"):
        load_model(crafted)


def test_a_file_that_is_not_a_skops_zip_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "response.logistic.skops"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnsafeModelFileError, match="response.logistic.skops: not a readable"):
        load_model(bad)


# ------------------------------------------------- the allowlist matches what we save

def test_allowlist_is_exactly_what_the_installed_skops_reports_for_our_files(data, tmp_path):
    X, y = data
    saved = {
        "logistic": LogisticModel(C=1.0).fit(X, y, X, y).save(tmp_path / "l"),
        "hist_gb": HistGBModel(max_iter=20).fit(X, y, X, y).save(tmp_path / "h"),
        "logistic_propensity": LogisticPropensity(C=1.0).fit(
            X, np.where(y == 1, "cbt", "nsaid")).save(tmp_path / "p"),
    }
    for kind, path in saved.items():
        assert untrusted_types(path) == ALLOWED_TYPES[kind], (
            f"skops reports another type set for {kind}: review safe_skops.ALLOWED_TYPES "
            "before upgrading skops")


def test_skops_is_pinned_in_pyproject():
    from importlib.metadata import version

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"skops=={version("skops")}"' in text


@pytest.mark.parametrize("kind", ["logistic", "hist_gb"])
def test_legitimate_skops_models_still_load_and_predict_identically(kind, data, tmp_path):
    X, y = data
    model = (LogisticModel(C=1.0) if kind == "logistic" else HistGBModel(max_iter=20)).fit(
        X, y, X, y)
    loaded = load_model(model.save(tmp_path / "response"))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


# ------------------------------------------------------------------ bundle checks

@pytest.fixture()
def bundle_dir(small_bundle, tmp_path):
    return save_bundle(small_bundle, tmp_path / "bundle")


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _write_manifest(directory: Path, manifest: dict) -> None:
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_manifest_records_a_sha256_per_file(bundle_dir):
    manifest = _manifest(bundle_dir)
    files = [rel for t in manifest["treatments"] for rel in manifest["files"][t].values()]
    files += [manifest["propensity"]] if manifest.get("propensity") else []
    assert sorted(manifest["sha256"]) == sorted(files)
    assert all(len(h) == 64 for h in manifest["sha256"].values())


def test_truncated_model_never_reaches_xgboost(bundle_dir):
    path = bundle_dir / "tramadol" / "response.xgboost.ubj"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match=r"tramadol/response.xgboost.ubj does not match"):
        load_bundle(bundle_dir)


def test_swapped_model_is_refused(bundle_dir):
    shutil.copy(bundle_dir / "duloxetine" / "response.xgboost.ubj",
                bundle_dir / "tramadol" / "response.xgboost.ubj")
    with pytest.raises(BundleError, match="tramadol/response.xgboost.ubj does not match"):
        load_bundle(bundle_dir)


def test_missing_model_is_named(bundle_dir):
    (bundle_dir / "tramadol" / "adverse_event.xgboost.ubj").unlink()
    with pytest.raises(BundleError, match="tramadol/adverse_event.xgboost.ubj is missing"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("target", ["../elsewhere/response.xgboost.ubj", "/etc/passwd"])
def test_paths_outside_the_bundle_are_refused(bundle_dir, target):
    manifest = _manifest(bundle_dir)
    manifest["files"]["tramadol"]["response"] = target
    manifest["sha256"][target] = "0" * 64
    _write_manifest(bundle_dir, manifest)
    with pytest.raises(BundleError, match="points outside the bundle folder"):
        load_bundle(bundle_dir)


def test_symlink_out_of_the_bundle_is_refused(bundle_dir, tmp_path):
    outside = tmp_path / "outside.ubj"
    shutil.copy(bundle_dir / "tramadol" / "response.xgboost.ubj", outside)
    (bundle_dir / "tramadol" / "response.xgboost.ubj").unlink()
    (bundle_dir / "tramadol" / "response.xgboost.ubj").symlink_to(outside)
    with pytest.raises(BundleError, match="points outside the bundle folder"):
        load_bundle(bundle_dir)


def test_unreadable_manifest_names_the_file(bundle_dir):
    (bundle_dir / "manifest.json").write_text('{"model_type": ')
    with pytest.raises(BundleError, match=r"manifest.json: not a readable bundle manifest"):
        load_bundle(bundle_dir)


def test_pinned_hash_must_match(bundle_dir):
    pinned = manifest_sha256(bundle_dir)
    assert load_bundle(bundle_dir, expected_sha256=pinned).treatments
    with pytest.raises(BundleError, match="is not the pinned"):
        load_bundle(bundle_dir, expected_sha256="0" * 64)


def test_model_of_another_kind_than_the_manifest_says_is_refused(bundle_dir):
    manifest = _manifest(bundle_dir)
    manifest["model_type"] = "logistic"
    _write_manifest(bundle_dir, manifest)
    with pytest.raises(BundleError, match="are of another kind"):
        load_bundle(bundle_dir)


@pytest.fixture()
def hist_gb_bundle(small_splits, tmp_path):
    from precision_pain.models.bundle import bundle_from_training
    from precision_pain.registry import select_treatments
    from precision_pain.models.train import train_all

    fitted = train_all(select_treatments(["duloxetine"]), small_splits["train"],
                       small_splits["valid"], "hist_gb", {"max_iter": 20}, seed=0)
    return save_bundle(bundle_from_training(fitted, "hist_gb", {}), tmp_path / "hgb")


def test_hist_gb_bundles_need_a_pin_or_the_projects_own_folder(hist_gb_bundle):
    with pytest.raises(BundleError, match="--bundle-sha256"):
        load_bundle(hist_gb_bundle)
    assert load_bundle(hist_gb_bundle, own_bundle=True).treatments == ("duloxetine",)
    pinned = manifest_sha256(hist_gb_bundle)
    assert load_bundle(hist_gb_bundle, expected_sha256=pinned).treatments == ("duloxetine",)


def test_predict_refuses_a_bundle_with_a_hidden_payload(small_splits, small_synthetic, marker,
                                                       tmp_path):
    """The attack of the issue: a payload inside a real pipeline, manifest rewritten to match."""
    from precision_pain.models.bundle import bundle_from_training, sha256_file
    from precision_pain.registry import select_treatments
    from precision_pain.models.train import train_all

    # a logistic bundle for one treatment, then its response model swapped for a crafted one
    fitted = train_all(select_treatments(["duloxetine"]), small_splits["train"],
                       small_splits["valid"], "logistic", {"C": 0.1}, seed=0)
    directory = save_bundle(bundle_from_training(fitted, "logistic", {}), tmp_path / "lb")
    target = directory / "duloxetine" / "response.logistic.skops"
    crafted = _craft_hidden_in_pipeline(target, marker, tmp_path / "x.skops")
    shutil.copy(crafted, target)
    manifest = _manifest(directory)
    manifest["sha256"]["duloxetine/response.logistic.skops"] = sha256_file(target)
    _write_manifest(directory, manifest)

    cohort = tmp_path / "new.csv"
    small_synthetic.cohort.head(20).drop(columns=OUTCOME_COLUMNS).to_csv(cohort, index=False)
    out = tmp_path / "out" / "pred.csv"
    result = CliRunner().invoke(main, ["predict", str(cohort), "--out", str(out),
                                       "--models", str(directory)])
    assert result.exit_code != 0
    assert "never saves" in result.output and "response.logistic.skops" in result.output
    assert not marker.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_bundle_hash_command_prints_the_pin(bundle_dir):
    result = CliRunner().invoke(main, ["bundle-hash", str(bundle_dir)])
    assert result.exit_code == 0
    assert result.output.strip() == manifest_sha256(bundle_dir)


def test_predict_with_a_wrong_pin_writes_nothing(bundle_dir, small_synthetic, tmp_path):

    cohort = tmp_path / "new.csv"
    small_synthetic.cohort.head(5).drop(columns=OUTCOME_COLUMNS).to_csv(cohort, index=False)
    out = tmp_path / "out" / "pred.csv"
    result = CliRunner().invoke(main, ["predict", str(cohort), "--out", str(out), "--models",
                                       str(bundle_dir), "--bundle-sha256", "0" * 64])
    assert result.exit_code != 0 and "is not the pinned" in result.output
    assert not out.exists()

