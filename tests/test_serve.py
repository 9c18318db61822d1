"""The served recommender: logged with models-from-code, registered, loaded without pickle,
and answered over HTTP by `mlflow models serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from servers import free_port, wait_for

from precision_pain.models.bundle import save_bundle
from precision_pain.predict.recommend import OUTPUT_COLUMNS
from precision_pain.predict.serve import model_config, options_from_config

OUTCOME_COLUMNS = ["treatment", "pain_followup", "adverse_event"]
ALIAS = "served"


def test_model_config_round_trips(options):
    options = replace(options, harm_weight=0.7, top_k=2)
    assert options_from_config(model_config(options, 1000)) == options
    with pytest.raises(ValueError, match="lacks harm_weight"):
        options_from_config({})
    off = replace(options, non_opioid_first=False)
    assert options_from_config(model_config(off, 1000)) == off
    older = {k: v for k, v in model_config(off, 1000).items() if k != "non_opioid_first"}
    assert options_from_config(older).non_opioid_first  # models registered before: CDC default


@pytest.fixture(scope="module")
def registered(small_bundle, small_splits, params, tmp_path_factory, options):
    """The small bundle logged in a run and registered in a fresh SQLite store."""
    import mlflow

    from precision_pain import tracking

    root = tmp_path_factory.mktemp("serve")
    models = save_bundle(small_bundle, root / "bundle")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    track = params.tracking.model_copy(update={"uri": uri, "alias": ALIAS,
                                               "artifact_location": root / "artifacts"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        experiment = tracking.start(track)
        with mlflow.start_run(experiment_id=experiment) as run:
            run_id = run.info.run_id
        model_uri = tracking.log_recommender(track, models, run_id,
                                             model_config(replace(options, top_k=2), 50))
        yield model_uri, uri, track


def _records(small_synthetic, n):
    frame = small_synthetic.cohort.head(n).drop(columns=OUTCOME_COLUMNS)
    return json.loads(frame.to_json(orient="records"))


@pytest.mark.slow
def test_registered_recommender_loads_without_pickle(registered, small_synthetic, monkeypatch):
    import mlflow
    import pandas as pd

    model_uri, _, track = registered
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    version = mlflow.MlflowClient().get_model_version_by_alias(
        f"{track.registered_model_prefix}-recommender", ALIAS)
    assert version.run_id
    model = mlflow.pyfunc.load_model(model_uri)
    out = model.predict(pd.DataFrame(_records(small_synthetic, 4)))
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == 12
    # preferences and co-medication travel through the served model like through predict
    records = [{**r, "exclude_modalities": "opioid", "harm_weight": 2.0,
                "cyp2d6_inhibitor_drugs": "paroxetine"} for r in _records(small_synthetic, 2)]
    out = model.predict(pd.DataFrame(records))
    tramadol = out[out["treatment"] == "tramadol"]
    assert tramadol["excluded_by_preference"].all() and tramadol["rank"].eq(3).all()
    assert out["harm_weight"].eq(2.0).all()
    assert tramadol["guideline_note"].str.contains("phenoconversion|metabolizer").all()
    from precision_pain.predict.serve import RequestRefused
    with pytest.raises(RequestRefused, match="exclude_modalities.*'surgery'"):
        model.predict(pd.DataFrame([{**records[0], "exclude_modalities": "surgery"}]))
    # the one declared parameter: which table; plans need the plan learner this bundle lacks
    same = model.predict(pd.DataFrame(records), params={"output": "treatments"})
    pd.testing.assert_frame_equal(same, out)
    with pytest.raises(RequestRefused, match="plan learner"):
        model.predict(pd.DataFrame(records), params={"output": "plans"})
    with pytest.raises(RequestRefused, match="'tables' is not known"):
        model.predict(pd.DataFrame(records), params={"output": "tables"})


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.slow
def test_mlflow_models_serve_answers_ranked_explained_rows(registered, small_synthetic,
                                                          tmp_path):
    model_uri, tracking_uri, _ = registered
    log = tmp_path / "serve.log"
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/ping", process, seconds=180, log=log)
        status, body = _post(f"{base}/invocations",
                             {"dataframe_records": _records(small_synthetic, 3)})
        assert status == 200, body
        rows = body["predictions"]
        assert len(rows) == 9 and set(OUTPUT_COLUMNS) <= set(rows[0])
        assert [r["rank"] for r in rows[:3]] == [1, 2, 3]
        first = rows[0]
        assert "chance of response" in first["explanation"]
        assert first["adverse_event_explanation"]  # a sentence (or "constant-rate model")
        assert "minus" in first["contrast"]
        assert rows[2]["explanation"] == ""  # top_k=2 from the model config
        bad = _records(small_synthetic, 2)
        bad[1]["age"] = 12
        status, body = _post(f"{base}/invocations", {"dataframe_records": bad})
        assert status == 400 and "age" in json.dumps(body)
        _assert_refusals_like_the_cli(base, small_synthetic)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _assert_refusals_like_the_cli(base: str, small_synthetic) -> None:
    """Refused requests: HTTP 400, the contract's message, no stack trace, no echo of rows."""
    url = f"{base}/invocations"
    records = _records(small_synthetic, 3)
    duplicated = [records[0], {**records[1], "patient_id": records[0]["patient_id"]}]
    status, body = _post(url, {"dataframe_records": duplicated})
    assert status == 400 and "repeat a patient" in body["message"], body
    listed = [{**records[0], "age": [1, 2]}]
    status, body = _post(url, {"dataframe_records": listed})
    assert status == 400 and "single value" in body["message"], body
    planted = "planted.person@example.com"
    mrn = [{**records[0], "sex": planted, "patient_id": "MRN0012345678"}]
    status, body = _post(url, {"dataframe_records": mrn})
    text = json.dumps(body)
    assert status == 400 and planted not in text and "MRN0012345678" not in text, body
    too_many = [{**records[0], "patient_id": f"S{i}"} for i in range(51)]  # limit 50
    status, body = _post(url, {"dataframe_records": too_many})
    assert status == 400 and "at most 50" in body["message"], body
    for answer in (body,):
        assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer)


@pytest.mark.slow
def test_predict_cli_loads_the_registered_recommender(registered, small_synthetic, tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from precision_pain.cli import main

    src = tmp_path / "in.csv"
    small_synthetic.cohort.head(5).drop(columns=OUTCOME_COLUMNS).to_csv(src, index=False)
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(main, ["predict", str(src), "--out", str(out),
                                       "--registry-alias", ALIAS])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 15 and table["p_response_low"].notna().all()  # the bundle's profile
