"""The benchmark harness, once through every scenario against chat with tiny durations (`make bench` is the
full run), so that it keeps working as the server changes; and two trees of chat side by side, in rounds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from testkit.servers import ROOT

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
    assert {scenario for scenario, _ in found} == {1, 2, 3, 4, 5, 6}

    send = found[1, "send"]
    assert send["ok"] > 0 and send["exactly_once"] is True
    assert all(found[2, v]["ok"] > 0 and found[2, v]["not_ok"] == 0 for s, v in found if s == 2)
    closed = found[3, "closed-loop"]
    assert closed["delivered"] > 0 and closed["lost"] == 0 and closed["duplicated"] == 0
    assert found[4, "open-loop-quiet"]["lost"] == 0
    idle = found[5, "idle"]
    assert idle["opened"] == idle["wanted"] and idle["fan_out_delivered"] == idle["opened"]
    assert found[6, "storm"]["logins"]["statuses"]

    table = completed.stdout
    assert "| 1 send · 2xx req/s |" in table and "| 5 idle · server RSS KiB per socket |" in table


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make test installs it)")
def test_another_tree_of_chat_runs_beside_this_one_in_alternating_rounds(tmp_path):
    """--chat-sources serves chat@LABEL from another folder (here a copy of this tree's chat/ and migrations/),
    --rounds runs each server again in the reverse order, on the database of the first round, and the report
    sets the two side by side."""
    other = tmp_path / "other-tree"
    for folder in ("chat", "migrations"):
        shutil.copytree(ROOT / folder, other / folder, ignore=shutil.ignore_patterns("__pycache__"))
    served = other / "served-by-hypercorn"
    with (other / "chat" / "__init__.py").open("a") as init:  # the copy tells when a server imports it
        init.write(f'\nimport sys as _sys\nif "hypercorn" in _sys.modules:\n    open({str(served)!r}, "w").close()\n')
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(results), "--scenarios", "1,5"]
    command += ["--servers", "chat,chat@other", "--chat-sources", f"other={other}", "--rounds", "2"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "the server logged a traceback" not in completed.stderr, completed.stderr
    (jsonl,) = results.glob("*.jsonl")
    _, *records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    order = [(r["round"], r["server"]) for r in records if r["scenario"] == 1]
    assert order == [(0, "chat"), (0, "chat@other"), (1, "chat@other"), (1, "chat")]
    for record in records:
        if record["scenario"] == 1:
            assert record["ok"] > 0 and record["exactly_once"] is True, record
        else:  # the second round's message reaches every socket too (its client_id is new on the same database)
            assert record["fan_out_delivered"] == record["opened"] == record["wanted"], record
    assert served.exists()  # chat@other's hypercorn served the other tree's chat/

    table = completed.stdout
    assert "| scenario · figure | chat | chat@other |" in table
    assert "| scenario · figure | chat@other | chat | chat ÷ chat@other | ratio in each round |" in table
    assert "| 1 send · 2xx req/s |" in table.split("chat beside chat@other")[1]
