"""Which process made a sandbox, so leftovers of dead processes can be found.

A process is named by host, pid and the kernel's start time of that pid, so
a reused pid is not mistaken for the process that made a leaked container.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Session:
    host: str
    pid: int
    start: str

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"


def parse_start_time(stat: str) -> str:
    """Field 22 (starttime) of a ``/proc/<pid>/stat`` line; the command name may hold spaces."""
    after_name = stat[stat.rindex(")") + 2 :].split()
    return after_name[19]


def process_start_time(pid: int) -> str | None:
    """The start time of a live process, ``None`` when there is no such process."""
    try:
        return parse_start_time(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def current_session() -> Session:
    pid = os.getpid()
    return Session(host=socket.gethostname(), pid=pid, start=process_start_time(pid) or "0")


def session_alive(pid: str, start: str) -> bool:
    """Whether the process that labelled a container still runs (same pid, same start)."""
    if not pid.isdigit():
        return False
    return process_start_time(int(pid)) == start
