"""The benchmark harness, once through every scenario against chat with tiny durations (`make bench` is the
full run), so that it keeps working as the server changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from .support import ROOT

pytestmark = pytest.mark.bench


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make test installs it)")
def test_every_scenario_runs_against_chat(tmp_path):
    results = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "the server logged a traceback" not in completed.stderr, completed.stderr
    (jsonl,) = results.glob("*.jsonl")
    machine, *records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert machine["machine"]["nproc"] >= 1
    found = {(r["scenario"], r["variant"]): r for r in records}
    assert {scenario for scenario, _ in found} == {1, 2, 3, 4, 5, 6, 7}

    send = found[1, "send"]
    assert send["ok"] > 0 and send["exactly_once"] is True
    assert all(found[2, v]["ok"] > 0 and found[2, v]["not_ok"] == 0 for s, v in found if s == 2)
    closed = found[3, "closed-loop"]
    assert closed["delivered"] > 0 and closed["lost"] == 0 and closed["duplicated"] == 0
    assert found[4, "open-loop-quiet"]["lost"] == 0
    idle = found[5, "idle"]
    assert idle["opened"] == idle["wanted"] and idle["fan_out_delivered"] == idle["opened"]
    assert found[6, "storm"]["logins"]["statuses"]
    channel = found[7, "channel"]
    assert channel["delivered"] == channel["deliveries"] > 0 and channel["lost"] == 0 and channel["duplicated"] == 0

    table = completed.stdout
    assert "| 1 send · 2xx req/s |" in table and "| 5 idle · server RSS KiB per socket |" in table
