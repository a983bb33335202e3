"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temporary folder, one server on
a free loopback port, trust authentication, stopped and gone afterwards.

PostgreSQL refuses to run as root; as root, the cluster belongs to the ``postgres`` system user
(Debian's package creates it) and its commands run through ``runuser``. Its folder is then a
temporary folder of its own that ``postgres`` can reach (pytest's are private to their owner).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import helpers

INSTALL_HINT = "apt-get install postgresql (make system-deps does)"


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def run(binaries: Path, program: str, *args: str) -> None:
    done = subprocess.run(
        as_owner([str(binaries / program), *args]), cwd="/", capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{program} failed:\n{done.stdout}\n{done.stderr}")


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a cluster; yield its SQLAlchemy URL (database ``postgres``); stop and remove it."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError(f"no PostgreSQL server here: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="bikecount-pg-") as folder:
        data = Path(folder) / "pgdata"
        data.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(data, owner.pw_uid, owner.pw_gid)
            Path(folder).chmod(0o755)
        port = helpers.free_port()
        run(binaries, "initdb", "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
        run(
            binaries,
            "pg_ctl",
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(data / "log"),
            "-w",
            "start",
        )
        try:
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(binaries, "pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
