"""What the machine tells about a server process (from /proc and `ss`), and polling until a condition holds."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        result += kids
        todo += kids
    return result


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_connections(port: int, state: str = "connected", client_ports: tuple[int, ...] = ()) -> list[str]:
    """The server side of the TCP connections to a local port (from these client ports only, when given), in one
    state (ss's names: established, close-wait, ...; by default any in which the server still holds a socket:
    TIME-WAIT, which the kernel keeps after both sides closed, is left out)."""
    peers = " or ".join(f"dport = :{client}" for client in client_ports)
    condition = f"( sport = :{port} )" + (f" and ( {peers} )" if peers else "")
    out = subprocess.run(["ss", "-Htn", "state", state, condition], check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip() and not line.startswith(("LISTEN", "TIME-WAIT"))]


def connection_holders(port: int, client_ports: tuple[int, ...] = ()) -> set[int]:
    """The processes holding the server side of established TCP connections to a local port (from these client
    ports only, when given): which of a server's workers accepted them."""
    peers = " or ".join(f"dport = :{client}" for client in client_ports)
    condition = f"( sport = :{port} )" + (f" and ( {peers} )" if peers else "")
    command = ["ss", "-Htnp", "state", "established", condition]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def app_tracebacks(log: str) -> list[str]:
    """The tracebacks of a server log that pass through chat's own code.

    hypercorn logs one of its own when its graceful timeout cancels a connection still open at shutdown (a client
    that never closed): that is the client's doing, not an error of the application.
    """
    blocks = log.split("Traceback (most recent call last):")[1:]
    return [block for block in blocks if "/chat/" in block]


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: Callable[[], str] = str) -> None:
    """Poll a condition until it holds; fail with what() after the timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout}s: {what()}")
        time.sleep(0.05)
