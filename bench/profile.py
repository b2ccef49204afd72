"""`python -m bench.profile [send|history|closed]`: one chat scenario under py-spy, and where the time goes.

py-spy (`pip install py-spy`; not a dependency of chat) samples the pinned server's worker while the load runs;
the collapsed stacks go to bench/results/profile-<scenario>.txt and the functions with the largest share of
samples (inclusive, and self) are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from . import procs, rt
from .options import parse
from .run import Run, log
from .servers import CHAT, ROOT

# the event loop's thread, and the thread where aiosqlite runs every query; py-spy also lists the idle workers
# of the hash pool, which are not the server's work
THREADS = {"event loop": "BaseEventLoop.run_forever", "database thread": "_connection_worker_thread"}
IDLE_LEAVES = ("EpollSelector.select", "_connection_worker_thread (aiosqlite/core.py:59)")


def summarize(collapsed: Path, top: int = 30) -> str:
    """Per thread: its busy share of the samples, and the functions with the largest inclusive and self shares."""
    lines = []
    for name, marker in THREADS.items():
        lines += [f"== {name}", _summarize_thread(collapsed, marker, top), ""]
    return "\n".join(lines)


def _summarize_thread(collapsed: Path, marker: str, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if marker not in stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"
    lines = [
        f"busy in {total} of {total + idle} samples; shares below are of the busy ones",
        "",
        "inclusive %  function",
    ]
    lines += [f"{100 * n / total:10.1f}  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self %       function"]
    lines += [f"{100 * n / total:10.1f}  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def _start_py_spy(spy: str, pid: int, seconds: int, out: Path) -> subprocess.Popen:
    cmd = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--format", "raw"]
    return subprocess.Popen(procs.pinned(procs.LOADGEN_CPU, [*cmd, "--output", str(out)]), stdout=subprocess.DEVNULL)


async def profile(scenario: str, seconds: int, worker_class: str) -> Path:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    options = parse(
        ["--servers", CHAT, "--history-sizes", "1000000", "--send-seconds", str(seconds)]
        + ["--history-seconds", str(seconds), "--worker-class", worker_class]
    )
    procs.pin_self(procs.LOADGEN_CPU)
    procs.set_niceness(options.nice)
    out = ROOT / options.results_dir / f"profile-{scenario}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chat-profile-") as tmp:
        run = Run(options, Path(tmp))
        server = run.make_server(CHAT)
        run.prepare_database(server)
        server.start()
        try:
            cookies = await run.sign_in(server)
            spy_proc = _start_py_spy(spy, server.worker_pid(), seconds, out)
            if scenario == "send":
                run.send_messages(server, cookies)
            elif scenario == "history":
                run.history(server, cookies)
            else:
                pairs = await rt.open_pairs("chat", server.ws_url, cookies, run.user_pairs())
                await rt.closed_loop(pairs, seconds)
                await rt.close_pairs(pairs)
            spy_proc.wait(seconds + 30)
        finally:
            server.stop()
    log(f"collapsed stacks: {out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=("send", "history", "closed"), nargs="?", default="send")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--worker-class", default="asyncio")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    out = asyncio.run(profile(args.scenario, args.seconds, args.worker_class))
    print(summarize(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
