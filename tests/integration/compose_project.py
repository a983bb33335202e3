"""A compose project a test runs: `docker compose -p PROJECT --profile P... ARGS` in a folder."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class ComposeProject:
    """The compose project of a test: its folder, environment and published ports.

    ``figures`` collects the lines the test prints at its end (timings, sizes).
    """

    project: str
    profiles: tuple[str, ...]
    root: Path
    command: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    figures: list[str]

    def compose(
        self,
        *args: str,
        profiles: tuple[str, ...] | None = None,
        timeout: float = 900,
        check: bool = True,
    ) -> str:
        """``docker compose`` with this project's name and ``profiles`` (default: its own)."""
        chosen = self.profiles if profiles is None else profiles
        flags = [word for profile in chosen for word in ("--profile", profile)]
        done = subprocess.run(
            [*self.command, "-p", self.project, *flags, *args],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            output = f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
            pytest.fail(f"compose {' '.join(args)} failed:\n{output}\n{self.logs()}")
        return done.stdout + done.stderr

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def logs(self, *services: str) -> str:
        """The last lines of the services' logs (every service's by default)."""
        return self.compose("logs", "--no-color", "--tail", "40", *services, check=False)
