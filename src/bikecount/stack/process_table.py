"""The process table, read from ``/proc``: a process's descendants, which of them still run,
whether a process group is empty. A process is told apart from a later one reusing its pid by its
start time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Identity:
    """A process, told apart from a later one that reuses its pid by its start time."""

    pid: int
    started: int


def _read_stat(pid: int) -> tuple[int, int, str, int] | None:
    """(parent pid, process group, state, start time) of a process, from ``/proc``."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2]), fields[0], int(fields[19])


def _process_table() -> dict[int, tuple[int, int, str, int]]:
    table = {}
    for entry in PROC.glob("[0-9]*"):
        stat = _read_stat(int(entry.name))
        if stat is not None:
            table[int(entry.name)] = stat
    return table


def descendants(pid: int) -> list[Identity]:
    """A process and all its descendants (empty where there is no ``/proc``)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in table:
            found.append(Identity(current, table[current][3]))
            todo.extend(children.get(current, []))
    return found


def alive(identities: list[Identity]) -> list[Identity]:
    """Those of ``identities`` still running (zombies count as gone: they hold no resources)."""
    left = []
    for identity in identities:
        stat = _read_stat(identity.pid)
        if stat is not None and stat[3] == identity.started and stat[2] != "Z":
            left.append(identity)
    return left


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in process group ``pgid``."""
    if not PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return any(pg == pgid and state != "Z" for _, pg, state, _ in _process_table().values())
