"""``python -m bikecount``: the command line, for child processes that must use this interpreter."""

from bikecount.cli import app

app()
