"""``bikecount data``: generate, fetch and split record files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.status import Status
from rich.table import Table

from bikecount.cli.console import console, fail
from bikecount.cli.context import settings_of
from bikecount.cli.failures import fail_for
from bikecount.data.fetch import FetchError, download_export
from bikecount.data.io import DataFileError, read_records, write_records
from bikecount.data.prepare import (
    RAW_NAMES,
    IncompleteDatasetsError,
    default_raw_path,
    prepare_datasets,
    write_datasets,
)
from bikecount.data.split import REFERENCE_FRACTION
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.records import (
    COUNTER,
    TIMESTAMP,
    RecordError,
    parse_records,
    parse_timestamps,
    to_export_columns,
)

app = typer.Typer(help="Get data: generate it, download the Paris export, split it in time.")


SynthEndOption = Annotated[
    datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"],
        help="Last day of the generated data (local time); the same end and seed give the "
        "same records.",
        show_default="yesterday in Paris",
    ),
]
SynthStartOption = Annotated[
    datetime | None,
    typer.Option(formats=["%Y-%m-%d"], help="First day instead of the last one (local time)."),
]
MonthsOption = Annotated[
    int, typer.Option(min=1, help="How many months of hourly records to generate.")
]
CountersOption = Annotated[int, typer.Option(min=1, help="How many counters to simulate.")]
SynthSeedOption = Annotated[
    int | None,
    typer.Option(
        help="Random seed: the same seed gives the same data.",
        show_default="BIKECOUNT_SEED or 42",
    ),
]
SynthOutputOption = Annotated[
    Path | None,
    typer.Option(help="File to write (.csv, .csv.gz or .parquet).", show_default="data/raw.csv.gz"),
]


@app.command()
def synth(
    ctx: typer.Context,
    end: SynthEndOption = None,
    start: SynthStartOption = None,
    months: MonthsOption = SynthConfig.months,
    counters: CountersOption = SynthConfig.n_counters,
    seed: SynthSeedOption = None,
    output: SynthOutputOption = None,
) -> None:
    """Generate realistic synthetic records in the Open Data export format (no network needed).

    The data ends yesterday (Paris time) unless --end or --start says otherwise.
    """
    if start is not None and end is not None:
        fail("give --start or --end, not both")
    settings = settings_of(ctx)
    output = output or settings.data_dir / RAW_NAMES[0]
    config = SynthConfig(
        start=None if start is None else f"{start:%Y-%m-%d}",
        end=None if end is None else f"{end:%Y-%m-%d}",
        months=months,
        n_counters=counters,
        seed=settings.seed if seed is None else seed,
    )
    with console.status("generating records..."):
        try:
            records = generate_records(config)
            write_records(records, output)
        except (ValueError, OSError) as exc:
            fail_for(exc, f"could not generate {output}: {exc}", path=output)
    console.print(
        f"[green]generated[/] [bold]{output}[/]: {len(records):,} rows, "
        f"{to_export_columns(records)[COUNTER].nunique()} counters, {_period(records)}"
    )


FetchUrlOption = Annotated[
    str | None,
    typer.Option(
        help="Export URL.", show_default="BIKECOUNT_OPEN_DATA_URL or the Paris Open Data export"
    ),
]
FetchOutputOption = Annotated[
    Path | None,
    typer.Option(
        help="File to write; an unfinished download of it is resumed.",
        show_default="data/raw.csv",
    ),
]
FetchTimeoutOption = Annotated[
    float, typer.Option(min=1, help="Seconds to wait to connect, or between two chunks.")
]


@app.command()
def fetch(
    ctx: typer.Context,
    url: FetchUrlOption = None,
    output: FetchOutputOption = None,
    timeout: FetchTimeoutOption = 30.0,
) -> None:
    """Download the Paris Open Data bike counter export (';'-separated CSV)."""
    settings = settings_of(ctx)
    url = url or settings.open_data_url
    output = output or settings.data_dir / RAW_NAMES[1]
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(output.name, total=None)

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        try:
            download_export(url, output, on_progress=on_progress, timeout=timeout)
        except FetchError as exc:
            progress.stop()
            fail(str(exc))
    size = output.stat().st_size
    console.print(f"[green]downloaded[/] {url} -> [bold]{output}[/] ({size:,} bytes)")


SplitInputOption = Annotated[
    Path | None,
    typer.Option(
        "--input",
        "-i",
        help="Raw record file in the export format.",
        show_default="data/raw.csv.gz, else data/raw.csv",
    ),
]
CutoffOption = Annotated[
    str | None,
    typer.Option(
        help="Date (Europe/Paris) where current data starts, e.g. 2021-06-01; replaces --fraction."
    ),
]
FractionOption = Annotated[
    float | None,
    typer.Option(
        help="Share of the time span that goes to the reference data.",
        show_default=str(REFERENCE_FRACTION),
    ),
]
SampleRowsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Rows in test_sample.csv, drawn at random from the reference rows.",
        show_default="BIKECOUNT_TEST_SAMPLE_ROWS or 1000",
    ),
]
SampleSeedOption = Annotated[
    int | None,
    typer.Option(help="Seed of the test sample draw.", show_default="BIKECOUNT_SEED or 42"),
]


@app.command()
def split(
    ctx: typer.Context,
    input_path: SplitInputOption = None,
    cutoff: CutoffOption = None,
    fraction: FractionOption = None,
    sample_rows: SampleRowsOption = None,
    seed: SampleSeedOption = None,
) -> None:
    """Split raw records in time into reference, current and test-sample data sets."""
    if cutoff is not None and fraction is not None:
        fail("give --cutoff or --fraction, not both")
    settings = settings_of(ctx)
    source = input_path or default_raw_path(settings)
    valid = _read_valid(source)
    try:
        written = write_datasets(
            valid,
            settings,
            cutoff=cutoff,
            fraction=REFERENCE_FRACTION if fraction is None else fraction,
            sample_size=sample_rows,
            seed=seed,
        )
    except ValueError as exc:
        fail(str(exc))
    console.print(_split_table(source, written))


def _split_table(source: Path, written: dict[str, tuple[Path, pd.DataFrame]]) -> Table:
    """Each data set written: its file, rows and period."""
    table = Table(title=f"split of {source}")
    table.add_column("file")
    table.add_column("rows", justify="right")
    table.add_column("period (Paris time)", no_wrap=True)
    for path, frame in written.values():
        table.add_row(str(path), f"{len(frame):,}", _period(frame))
    return table


def _read_valid(source: Path) -> pd.DataFrame:
    """The rows of ``source`` that pass the record contract (with a count), as read."""
    try:
        raw = read_records(source)
        parsed = parse_records(raw, require_count=True)
    except DataFileError as exc:
        fail(str(exc), hint="run `bikecount data synth` or `bikecount data fetch` first")
    except RecordError as exc:
        fail(f"{source}: {exc}", hint="the file must be in the Paris Open Data export format")
    style = "yellow" if parsed.dropped_rows else "green"
    console.print(
        f"read {parsed.total_rows:,} rows from [bold]{source}[/]: "
        f"[{style}]{parsed.dropped_rows:,} invalid, dropped[/]"
    )
    for reason, count in parsed.drop_reasons().items():
        console.print(f"  {count:,} x {reason}")
    if parsed.frame.empty:
        fail(f"{source}: no valid rows to split")
    # Keep the rows as they were read (strings in the export format), not the parsed frame.
    return raw.reset_index(drop=True).loc[parsed.frame.index]


def _period(frame: pd.DataFrame) -> str:
    """``first → last`` timestamp of export records, in Paris local time."""
    records = to_export_columns(frame)
    if frame.empty or TIMESTAMP not in records.columns:
        return "-"
    times = parse_timestamps(records[TIMESTAMP].astype("string")).dropna()
    if times.empty:
        return "-"
    return f"{times.min():%Y-%m-%d %H:%M} → {times.max():%Y-%m-%d %H:%M}"


@app.command()
def prepare(ctx: typer.Context) -> None:
    """Make sure reference, current and test_sample exist: split data/raw.*, or generate it first.

    Existing data sets are kept (a missing test sample is drawn from reference); delete them
    to make new ones.
    """
    settings = settings_of(ctx)
    try:
        with console.status("preparing data sets...") as status:
            paths = prepare_datasets(settings, on_stage=lambda message: _stage(status, message))
    except IncompleteDatasetsError as exc:
        fail(str(exc))
    for name, path in paths.items():
        console.print(f"{name:12} {path}")


def _stage(status: Status, message: str) -> None:
    console.print(message)
    status.update(message)
