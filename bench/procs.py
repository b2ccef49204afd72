"""Processes on this machine: CPU pinning, niceness and the open-file limit (a process's RSS and CPU time are
testkit.probes')."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SERVER_CPU, LOADGEN_CPU = 0, 1


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    """`cmd` run on one CPU (`taskset -c`), or as it is on a machine with a single core."""
    return ["taskset", "-c", str(cpu), *cmd] if can_pin() else cmd


def pin_self(cpu: int) -> None:
    if can_pin():
        os.sched_setaffinity(0, {cpu})


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's (and so its children's) open-file limit towards `wanted`; returns the new limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def set_niceness(nice: int, pid: int = 0) -> int:
    """Run a process (and so every child it starts) at `nice` when allowed; returns the niceness in force.

    With autogroup scheduling (most desktop and VM kernels) a process's nice only weighs against the processes of
    its own session: each session's group gets an equal share of a core whatever its members' nice. The group's
    own nice (/proc/PID/autogroup) is what makes a server hold its core against other sessions' work.
    """
    if nice and hasattr(os, "setpriority"):
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid or 'self'}/autogroup").write_text(str(nice))
    return os.getpriority(os.PRIO_PROCESS, pid)
