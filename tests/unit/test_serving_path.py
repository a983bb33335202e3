"""The API's fast path answers what the model's own pipeline answers, for every model type.

Served predictions go through the quick record reading and the lean model path; the reference
is the normal pipeline: the records contract, then the fitted model's own ``predict`` (its
forests on every core, as fitted). Both must agree to 1e-6 (relative) on real records, the
classifier's labels exactly, one record at a time and in batches.

The real records are the 48 rows of ``tests/fixtures/opendata`` (2 counters x 24 hours); with
the full real data (``BIKECOUNT_REAL_DATA``, by default ``../shared/data/paris-counters-2020-2021``)
present, a day of every counter is checked too.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from bikecount import lean_predict
from bikecount.api.model_cache import ModelCache
from bikecount.api.records_body import records_frame
from bikecount.api.regmodel import create_app
from bikecount.api.routes.predict import INLINE_RECORDS, serve_predictions
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.inference import tune_for_serving
from bikecount.models import MODEL_TYPES, build_model, parse_params
from bikecount.records import COUNT, TIMESTAMP, require_valid

ROOT = Path(__file__).parents[2]
REAL_EXPORT = ROOT / "tests" / "fixtures" / "opendata" / "exports-csv-2021-06-01.csv"
REAL_DATA = Path(
    os.environ.get(
        "BIKECOUNT_REAL_DATA", ROOT.parent / "shared" / "data" / "paris-counters-2020-2021"
    )
)
RELATIVE = 1e-6
Record = dict[str, Any]


def as_records(frame: pd.DataFrame) -> list[Record]:
    """Rows as JSON records: empty fields left out, no count (a prediction needs none)."""
    rows = frame.drop(columns=[COUNT, "sum_counts"], errors="ignore").to_dict(orient="records")
    return [
        {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for row in rows
    ]


@pytest.fixture(scope="module")
def fitted(small_frame: pd.DataFrame) -> dict[str, Any]:
    """Every model type fitted with its fast settings on generated data (forests on every core)."""
    counts = small_frame["count"].to_numpy()
    return {
        model_type: build_model(model_type, parse_params(model_type, fast=True), seed=7).fit(
            small_frame, counts
        )
        for model_type in MODEL_TYPES
    }


def serving_cache(model: Any) -> ModelCache:
    """A cache serving the model as the API loads it: a copy out of storage, tuned for serving."""
    loaded = tune_for_serving(pickle.loads(pickle.dumps(model)))
    return ModelCache(
        Settings(_env_file=None),
        resolve=lambda model_type, metric: 1,
        load=lambda model_type, version: loaded,
        probe=lambda: True,
    )


@pytest.fixture(scope="module")
def caches(fitted: dict[str, Any]) -> dict[str, ModelCache]:
    return {model_type: serving_cache(model) for model_type, model in fitted.items()}


def assert_served_as_the_pipeline_predicts(
    model: Any, cache: ModelCache, model_type: str, records: list[Record]
) -> None:
    """``POST /predict``'s answer is the pipeline's (the records contract, the model)."""
    frame = require_valid(records_frame(records))
    result = serve_predictions(cache, cache.settings, records, model_type)[1]
    if model_type == "rf_class":
        proba = model.predict_proba(frame)
        np.testing.assert_array_equal(result.values, model.predict(frame))
        assert result.labels == [("faible", "forte")[v] for v in model.predict(frame)]
        np.testing.assert_allclose(result.proba_forte, proba[:, 1], rtol=RELATIVE, atol=0)
    else:
        expected = np.clip(model.predict(frame), 0, None)
        np.testing.assert_allclose(result.values, expected, rtol=RELATIVE, atol=0)


@pytest.fixture(scope="module")
def real_records() -> list[Record]:
    return as_records(read_records(REAL_EXPORT))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_served_predictions_are_the_pipelines_on_real_records(
    model_type: str,
    fitted: dict[str, Any],
    caches: dict[str, ModelCache],
    real_records: list[Record],
) -> None:
    model, cache = fitted[model_type], caches[model_type]
    for record in real_records[::4]:  # both counters, every fourth hour
        assert_served_as_the_pipeline_predicts(model, cache, model_type, [record])
    for batch in (real_records[:24], real_records):
        assert_served_as_the_pipeline_predicts(model, cache, model_type, batch)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_served_predictions_are_the_pipelines_on_the_full_real_data(
    model_type: str, fitted: dict[str, Any], caches: dict[str, ModelCache]
) -> None:
    current = REAL_DATA / "current.csv.gz"
    if not current.is_file():
        pytest.skip(f"the full real data is not here ({current}); the fixture rows are checked")
    raw = read_records(current)
    day = raw[raw[TIMESTAMP].astype(str).str.startswith(str(raw[TIMESTAMP].iloc[-1])[:10])]
    records = as_records(day)
    model, cache = fitted[model_type], caches[model_type]
    for record in records[::20]:
        assert_served_as_the_pipeline_predicts(model, cache, model_type, [record])
    assert_served_as_the_pipeline_predicts(model, cache, model_type, records)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_the_route_answers_the_pipelines_on_and_off_the_event_loop(
    model_type: str,
    fitted: dict[str, Any],
    caches: dict[str, ModelCache],
    real_records: list[Record],
    tmp_path: Path,
) -> None:
    """``POST /predict`` itself: a record alone (predicted on the event loop once its model is
    loaded) and a batch above ``INLINE_RECORDS`` (on a worker thread) get the pipeline's
    answers, in order."""
    settings = Settings(_env_file=None, data_dir=tmp_path, mlruns_dir=tmp_path / "mlruns")
    app = create_app(settings)
    app.state.bikecount.cache = caches[model_type]
    model = fitted[model_type]
    batch = (real_records * 2)[: INLINE_RECORDS + 8]

    async def post(records: list[Record]) -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)  # no lifespan: nothing talks to MLflow
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.post(
                "/predict", json={"records": records, "model_type": model_type}
            )
        assert response.status_code == 200, response.text
        return dict(response.json())

    caches[model_type].get(model_type)  # loaded: a small request takes the inline path
    assert caches[model_type].peek(model_type) is not None
    for records in ([real_records[5]], batch):
        body = asyncio.run(post(records))
        frame = require_valid(records_frame(records))
        expected = model.predict(frame)
        values = np.asarray(body["predictions"], dtype=float)
        np.testing.assert_allclose(
            values, np.clip(np.asarray(expected, dtype=float), 0, None), rtol=RELATIVE, atol=0
        )
        assert body["count"] == len(records)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_big_batches_shared_across_cores_are_the_pipelines(
    model_type: str,
    fitted: dict[str, Any],
    caches: dict[str, ModelCache],
    small_raw: pd.DataFrame,
) -> None:
    """From ``PARALLEL_ROWS`` records, trees predict a share of the rows on each core: the
    answers are still the pipeline's, in input order."""
    records = as_records(small_raw.iloc[::-1].head(lean_predict.PARALLEL_ROWS + 101))
    assert_served_as_the_pipeline_predicts(
        fitted[model_type], caches[model_type], model_type, records
    )


def test_rows_shared_across_cores_come_back_in_order() -> None:
    rows = np.arange(3 * lean_predict.PARALLEL_ROWS, dtype=float)
    shares: list[int] = []

    def twice(part: np.ndarray) -> np.ndarray:
        shares.append(len(part))
        return part * 2

    np.testing.assert_array_equal(lean_predict.by_rows(twice, rows), rows * 2)
    assert sum(shares) == len(rows)
    assert len(shares) == min(len(os.sched_getaffinity(0)), len(rows))
    frame = pd.DataFrame({"x": rows})
    np.testing.assert_array_equal(
        lean_predict.by_rows(lambda part: part["x"].to_numpy() + 1, frame), rows + 1
    )
