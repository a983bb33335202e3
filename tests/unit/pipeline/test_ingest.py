"""The pipeline's ingest without a server: fallbacks, days that would shrink, rejection checks,
and the CLI's ingest command on them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bikecount.cli import app
from bikecount.config import Settings
from bikecount.data.io import write_records
from bikecount.pipeline import PipelineError
from bikecount.pipeline.ingest import (
    SHRINK_FORCED,
    SHRINK_REFUSED,
    IngestResult,
    ShrinkRefusedError,
    check_rejections,
    ingest,
    ingest_day,
)
from bikecount.pipeline.store import ingest_log, read_counts, read_table
from bikecount.pipeline.store_engine import open_store
from bikecount.records import COUNT

DAY = date(2021, 3, 10)


@pytest.fixture
def drop(tmp_path: Path, small_raw: pd.DataFrame) -> Path:
    write_records(small_raw, tmp_path / "drop" / "export.csv")
    return tmp_path / "drop"


def settings_for(tmp_path: Path, **values: object) -> Settings:
    # Port 9 (discard) refuses connections: Open Data is "unreachable" at once.
    return Settings(
        _env_file=None,
        pipeline_db_url=f"sqlite:///{tmp_path / 'pipeline.db'}",
        open_data_url="http://127.0.0.1:9/exports/csv",
        **values,
    )


def test_unreachable_open_data_falls_back_to_the_configured_source(
    tmp_path: Path, drop: Path
) -> None:
    result = ingest_day(settings_for(tmp_path, pipeline_source=str(drop)), DAY)
    assert result.source == str(drop) and result.rows_written == 6 * 24
    assert result.note is not None and result.note.startswith("Paris Open Data unreachable")


def test_prod_has_no_generated_fallback(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, env="prod", gcs_bucket="b", api_key="k")
    assert settings.ingest_fallback is None
    with pytest.raises(PipelineError, match="no fallback source is set: set BIKECOUNT_PIPELINE_"):
        ingest_day(settings, DAY)
    assert settings_for(tmp_path).ingest_fallback == "synthetic"  # dev demos


def test_a_source_without_the_day_leaves_the_stored_day_alone(
    tmp_path: Path, drop: Path, small_raw: pd.DataFrame
) -> None:
    settings = settings_for(tmp_path)
    ingest(settings, DAY, drop)
    broken = small_raw.assign(**{COUNT: "n/a"})  # every count of the day unreadable
    write_records(broken, tmp_path / "broken" / "export.csv")
    with pytest.raises(PipelineError, match="no valid record of 2021-03-10 in .*left as it was"):
        ingest(settings, DAY, tmp_path / "broken")
    engine = open_store(settings.pipeline_db_url)
    assert len(read_counts(engine)) == 6 * 24  # the first ingest's rows are still there
    log = read_table(engine, ingest_log)
    assert list(log["rows_rejected"]) == [0, 6 * 24]  # the failed attempt is logged too


@pytest.fixture
def one_row(tmp_path: Path, small_raw: pd.DataFrame) -> Path:
    """A file-drop folder holding a single valid record of ``DAY``."""
    of_day = small_raw[small_raw["Date et heure de comptage"].str.startswith(DAY.isoformat())]
    write_records(of_day.head(1), tmp_path / "one_row" / "export.csv")
    return tmp_path / "one_row"


def test_a_re_ingest_that_would_shrink_a_stored_day_is_refused_and_logged(
    tmp_path: Path, drop: Path, one_row: Path
) -> None:
    settings = settings_for(tmp_path)
    ingest(settings, DAY, drop)
    engine = open_store(settings.pipeline_db_url)
    before = read_counts(engine)
    with pytest.raises(ShrinkRefusedError, match=r"1 valid rows of 2021-03-10 in .* against 144"):
        ingest_day(settings, DAY, one_row)
    after = read_counts(engine)
    assert len(after) == 6 * 24 and after["count"].sum() == before["count"].sum()
    log = read_table(engine, ingest_log)
    assert log["reasons"].iloc[-1] == {SHRINK_REFUSED: 144}

    forced = ingest_day(settings, DAY, one_row, force=True)
    assert forced.rows_written == 1 and forced.note.startswith("forced: the stored day shrank")
    assert len(read_counts(engine)) == 1
    assert read_table(engine, ingest_log)["reasons"].iloc[-1] == {SHRINK_FORCED: 144}


def test_a_re_ingest_above_the_share_replaces_the_day(
    tmp_path: Path, small_raw: pd.DataFrame
) -> None:
    settings = settings_for(tmp_path, pipeline_reingest_min_share=0.8)
    write_records(small_raw, tmp_path / "full" / "export.csv")
    ingest(settings, DAY, tmp_path / "full")
    counters = sorted(small_raw["Nom du compteur"].unique())
    five_of_six = small_raw[small_raw["Nom du compteur"] != counters[0]]  # 83% of the rows
    write_records(five_of_six, tmp_path / "most" / "export.csv")
    result = ingest(settings, DAY, tmp_path / "most")
    assert result.rows_written == 5 * 24 and result.note is None
    assert len(read_counts(open_store(settings.pipeline_db_url))) == 5 * 24


def test_too_many_rejected_rows_fail_the_check() -> None:
    fine = IngestResult("2021-03-10", "drop", 100, 90, 10, {"count: not a number": 10})
    check_rejections(fine, 0.2)
    bad = IngestResult("2021-03-10", "drop", 100, 50, 50, {"count: not a number": 50})
    with pytest.raises(PipelineError, match=r"50 of 100 rows rejected \(50%, above 20%\)"):
        check_rejections(bad, 0.2)
    assert IngestResult("d", "s", 0, 0, 0).rejected_share == 0.0


def test_the_cli_ingests_through_the_fallback_and_says_so(
    tmp_path: Path, drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIKECOUNT_OPEN_DATA_URL", "http://127.0.0.1:9/exports/csv")
    monkeypatch.setenv("BIKECOUNT_PIPELINE_SOURCE", str(drop))
    runner = CliRunner()
    result = runner.invoke(app, ["pipeline", "ingest", "--date", DAY.isoformat()])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"{DAY}" in text and "144 stored" in text and "Paris Open Data unreachable" in text
    scored = runner.invoke(app, ["pipeline", "score", "--date", DAY.isoformat()])
    assert scored.exit_code == 0 and "not scored: no stored predictions" in scored.output


def test_the_cli_refuses_a_shrinking_re_ingest_unless_forced(
    tmp_path: Path, drop: Path, one_row: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    day = ["pipeline", "ingest", "--date", DAY.isoformat()]
    assert runner.invoke(app, [*day, "--source", str(drop)]).exit_code == 0
    refused = runner.invoke(app, [*day, "--source", str(one_row)])
    assert refused.exit_code == 1
    text = " ".join(refused.output.split())
    assert "re-ingest refused: 1 valid rows of 2021-03-10" in text and "--force" in text
    assert "Traceback" not in refused.output
    engine = open_store(f"sqlite:///{tmp_path / 'pipeline.db'}")
    assert len(read_counts(engine)) == 6 * 24
    forced = runner.invoke(app, [*day, "--source", str(one_row), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "forced: the stored day shrank" in " ".join(forced.output.split())
    assert len(read_counts(engine)) == 1


def test_the_cli_says_what_to_do_when_no_source_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIKECOUNT_OPEN_DATA_URL", "http://127.0.0.1:9/exports/csv")
    result = CliRunner().invoke(
        app, ["pipeline", "ingest", "--date", DAY.isoformat(), "--source", "opendata"]
    )
    assert result.exit_code == 1
    assert "could not reach http://127.0.0.1:9" in " ".join(result.output.split())
    assert "Traceback" not in result.output
