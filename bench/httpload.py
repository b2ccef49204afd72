"""HTTP load with wrk (Debian's package), pinned to the load generator's CPU, driven by the Lua scripts in lua/."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from . import procs

LUA_DIR = Path(__file__).resolve().parent / "lua"


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (apt-get install -y wrk)")
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str,
    script: str,
    seconds: int,
    connections: int,
    clients: list[tuple[str, int]],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> dict:
    """One wrk run (one thread, `connections` connections); wrk's figures plus its own CPU use."""
    run = uuid.uuid4().hex[:8]
    clients_file = workdir / f"clients-{run}.tsv"
    clients_file.write_text("".join(f"{cookie}\t{other}\n" for cookie, other in clients))
    out = workdir / f"wrk-{run}.json"
    full_env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_CLIENTS": str(clients_file),
        "BENCH_WRK_OUT": str(out),
        **(env or {}),
    }
    cmd = [wrk_path(), "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--timeout", "10s"]
    cmd += ["-s", str(LUA_DIR / script), url]
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    completed = subprocess.run(
        procs.pinned(procs.LOADGEN_CPU, cmd), env=full_env, capture_output=True, text=True, timeout=seconds + 60
    )
    wall = time.perf_counter() - wall0
    if completed.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stdout}\n{completed.stderr}")
    result = json.loads(out.read_text())
    elapsed = result["duration_us"] / 1e6
    result["ok_per_s"] = round(result["ok"] / elapsed, 1)
    result["client_cpu_pct"] = round(100 * (_children_cpu() - cpu0) / wall, 1)
    for key in ("p50", "p90", "p99", "p999", "max"):
        result[f"{key}_ms"] = round(result.pop(f"{key}_us") / 1000, 3)
    return result
