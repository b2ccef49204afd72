"""chat with tracemalloc on, for scenario 5's memory by package (docs/performance.md, "Lean sockets").

`BENCH_TRACEMALLOC=1 python -m bench --servers chat --scenarios 5` serves this entry point (`traced:app`, with this
folder on the server's PYTHONPATH): the harness sends SIGUSR1 before the idle sockets open and again once they are
open, and the second signal writes what grew in between, grouped by package, to /tmp/traced-<pid>.txt. Tracing
makes the worker slower and its RSS larger: the figures of such a run are not the bench's, only the split is.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter

tracemalloc.start(4)

from chat import create_app  # noqa: E402 - after tracing starts, so that everything is traced

app = create_app()
_snapshots: list[tracemalloc.Snapshot] = []


def package(filename: str) -> str:
    """`hypercorn`, `quart`, `chat`, `asyncio` (the standard library by module), … for one frame's file."""
    parts = filename.replace("\\", "/").split("/")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "chat" in parts:
        return "chat." + "/".join(parts[parts.index("chat") + 1 :]).removesuffix(".py")
    for index, part in enumerate(parts):
        if part.startswith("python3"):
            return parts[index + 1].removesuffix(".py") if index + 1 < len(parts) else part
    return filename


def module(filename: str) -> str:
    """`hypercorn/protocol/ws_stream`, `asyncio/tasks`, … : where in a package one frame is."""
    parts = filename.replace("\\", "/").removesuffix(".py").split("/")
    for marker in ("site-packages", "chat"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + (marker == "site-packages") :])
    for index, part in enumerate(parts):
        if part.startswith("python3") and index + 1 < len(parts):
            return "/".join(parts[index + 1 :])
    return filename


def _snapshot(*_: object) -> None:
    _snapshots.append(tracemalloc.take_snapshot())
    if len(_snapshots) < 2:
        return
    before, after = _snapshots[-2:]
    grown: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for stat in after.compare_to(before, "filename", cumulative=False):
        grown[package(stat.traceback[0].filename)] += stat.size_diff
        counts[package(stat.traceback[0].filename)] += stat.count_diff
    lines = [f"{name}\t{size}\t{counts[name]}" for name, size in grown.most_common()]
    # and the lines that grew most, each followed by its callers: which object of which layer the bytes are
    lines += ["", "# lines (where it was allocated < its caller < ...)"]
    for stat in after.compare_to(before, "traceback")[:60]:
        # a Traceback lists the oldest frame first
        where = " < ".join(f"{module(frame.filename)}:{frame.lineno}" for frame in reversed(stat.traceback))
        lines.append(f"# {stat.size_diff}\t{stat.count_diff}\t{where}")
    with open(os.path.join(tempfile.gettempdir(), f"traced-{os.getpid()}.txt"), "w") as out:
        out.write("\n".join(lines) + "\n")
    print("traced: written", file=sys.stderr)


signal.signal(signal.SIGUSR1, _snapshot)
