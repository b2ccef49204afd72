"""The markdown tables of a run: figures per server, ratios, targets; and, when other trees of chat ran beside
this one (--chat-sources), each one's figures beside chat's, with the ratio."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from .servers import ALL_SERVERS, BARE_QUART, CHAT, FLASK_SERVERS, is_chat

TARGET_SEND_FLASK, TARGET_SEND_BARE, TARGET_SEND_P99 = 3.0, 0.8, 50.0  # issue 19's
TARGET_HISTORY_FLASK, TARGET_HISTORY_BARE, TARGET_HISTORY_SLOWDOWN = 3.0, 0.8, 0.10
TARGET_CLOSED_FLASK, TARGET_OPEN_P99, TARGET_IDLE_KIB, TARGET_STORM = 3.0, 5.0, 30.0, 2.0


def _find(records: list[dict], server: str, scenario: int, variant: str) -> dict | None:
    return next(
        (r for r in records if r["server"] == server and r["scenario"] == scenario and r["variant"] == variant), None
    )


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("✅" if ok else "❌")


class Table:
    def __init__(self, records: list[dict]) -> None:
        self.records = records
        present = dict.fromkeys(r["server"] for r in records)
        self.servers = [s for s in ALL_SERVERS if s in present] + [s for s in present if s not in ALL_SERVERS]
        self.rows: list[list[str]] = []

    def row(self, label: str, cells: dict[str, str], flask_ratio=None, bare_ratio=None, target="", met=None) -> None:
        self.rows.append(
            [
                label,
                *(cells.get(s, "—") for s in self.servers),
                _ratio(flask_ratio),
                _ratio(bare_ratio),
                target,
                _met(met),
            ]
        )

    def figure(self, scenario: int, variant: str, key: str) -> dict[str, float | None]:
        found = {}
        for server in self.servers:
            record = _find(self.records, server, scenario, variant)
            value = record
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            found[server] = value
        return found

    def ratios(self, figures: dict[str, float | None]) -> tuple[float | None, float | None]:
        chat = figures.get(CHAT)
        flask = [figures[s] for s in FLASK_SERVERS if figures.get(s)]
        bare = figures.get(BARE_QUART)
        return (chat / max(flask) if chat and flask else None, chat / bare if chat and bare else None)

    def markdown(self) -> str:
        head = ["scenario · figure", *self.servers, "chat ÷ best Flask", "chat ÷ bare Quart", "target", "met"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def _all_met(*ratios_and_targets: tuple[float | None, float]) -> bool | None:
    """Every ratio measured at or above its target (one not measured, for want of its server, is not counted)."""
    measured = [ratio >= target for ratio, target in ratios_and_targets if ratio is not None]
    return all(measured) if measured else None


def _cells(figures: dict, digits: int = 1, suffix: str = "") -> dict[str, str]:
    return {server: _num(value, digits) + (suffix if value is not None else "") for server, value in figures.items()}


def _send(t: Table) -> None:
    rps = t.figure(1, "send", "ok_per_s")
    if not any(rps.values()):
        return
    to_flask, to_bare = t.ratios(rps)
    met = _all_met((to_flask, TARGET_SEND_FLASK), (to_bare, TARGET_SEND_BARE))
    t.row("1 send · 2xx req/s", _cells(rps, 0), to_flask, to_bare, "≥3× Flask, ≥0.8× bare Quart", met)
    p50, p99 = t.figure(1, "send", "p50_ms"), t.figure(1, "send", "p99_ms")
    cells = {s: f"{_num(p50[s])} / {_num(p99[s])}" if p99[s] is not None else "—" for s in t.servers}
    chat_p99 = p99.get(CHAT)
    t.row(
        "1 send · p50 / p99 ms (wrk)",
        cells,
        target="p99 ≤ 50 ms",
        met=None if chat_p99 is None else chat_p99 <= TARGET_SEND_P99,
    )
    once, ok = t.figure(1, "send", "exactly_once"), t.figure(1, "send", "ok")
    cells = {s: (f"{'yes' if once[s] else 'NO'} ({ok[s]:,})" if once[s] is not None else "—") for s in t.servers}
    t.row("1 send · every 2xx stored exactly once", cells, target="yes", met=once.get(CHAT))
    cpu_server, cpu_client = t.figure(1, "send", "server_cpu_pct"), t.figure(1, "send", "client_cpu_pct")
    cells = {
        s: f"{_num(cpu_server[s], 0)} / {_num(cpu_client[s], 0)}" if cpu_server[s] is not None else "—"
        for s in t.servers
    }
    t.row("1 send · CPU % server / wrk", cells)


def _history_page(variant: str) -> str:
    """ "newest-1000" -> "newest 50 of 1,000"; "before-1000" -> "before= middle of 1,000"."""
    shape, size = variant.split("-")
    return f"{'newest 50' if shape == 'newest' else 'before= middle'} of {int(size):,}"


def _history(t: Table) -> None:
    variants = sorted(
        {r["variant"] for r in t.records if r["scenario"] == 2 and r["variant"] != "newest-memory"},
        key=lambda v: (v.split("-")[0] != "newest", int(v.split("-")[1])),
    )
    if not variants:
        return
    for variant in variants:
        rps, p99 = t.figure(2, variant, "ok_per_s"), t.figure(2, variant, "p99_ms")
        if variant == "newest-" + variants[0].split("-")[1]:  # the smallest conversation: beside the bare servers
            memory = t.figure(2, "newest-memory", "ok_per_s")
            memory_p99 = t.figure(2, "newest-memory", "p99_ms")
            for server in t.servers:
                if rps.get(server) is None and memory.get(server) is not None:
                    rps[server], p99[server] = memory[server], memory_p99[server]
        to_flask, to_bare = t.ratios(rps)
        cells = {s: f"{_num(rps[s], 0)} (p99 {_num(p99[s])})" if rps[s] is not None else "—" for s in t.servers}
        shape = variant.split("-")[0]
        label = f"2 history · {_history_page(variant)} · req/s"
        to_bare = to_bare if shape == "newest" else None
        t.row(
            label,
            cells,
            to_flask,
            to_bare,
            "≥3× Flask" if to_bare is None else "≥3× Flask, ≥0.8× bare Quart",
            _all_met((to_flask, TARGET_HISTORY_FLASK), (to_bare, TARGET_HISTORY_BARE)),
        )
    sizes = sorted({int(v.split("-")[1]) for v in variants})
    if len(sizes) >= 2:
        for shape in ("newest", "before"):
            small = t.figure(2, f"{shape}-{sizes[0]}", "ok_per_s")
            large = t.figure(2, f"{shape}-{sizes[-1]}", "ok_per_s")
            cells = {
                s: f"{100 * (small[s] / large[s] - 1):+.1f} %" if small.get(s) and large.get(s) else "—"
                for s in t.servers
            }
            chat = small.get(CHAT) and large.get(CHAT) and (small[CHAT] / large[CHAT] - 1)
            t.row(
                f"2 history · {shape}: slower at {sizes[-1]:,} than at {sizes[0]:,}",
                cells,
                target="≤ 10 %",
                met=None if chat is None else chat <= TARGET_HISTORY_SLOWDOWN,
            )


def _realtime(t: Table) -> None:
    rate = t.figure(3, "closed-loop", "msg_per_s")
    if any(rate.values()):
        to_flask, _ = t.ratios(rate)
        lost, dup = t.figure(3, "closed-loop", "lost"), t.figure(3, "closed-loop", "duplicated")
        clean = lost.get(CHAT) == 0 and dup.get(CHAT) == 0 if lost.get(CHAT) is not None else None
        met = None if to_flask is None else to_flask >= TARGET_CLOSED_FLASK and bool(clean)
        t.row("3 closed loop · delivered msg/s", _cells(rate, 0), to_flask, target="≥3× Flask, 0 lost, 0 dup", met=met)
        p50, p99 = t.figure(3, "closed-loop", "p50_ms"), t.figure(3, "closed-loop", "p99_ms")
        t.row(
            "3 closed loop · p50 / p99 ms",
            {s: f"{_num(p50[s])} / {_num(p99[s])}" for s in t.servers if p99[s] is not None},
        )
        t.row(
            "3 closed loop · lost / duplicated",
            {s: f"{lost[s]} / {dup[s]}" for s in t.servers if lost[s] is not None},
            target="0 / 0",
            met=clean,
        )
    p99 = t.figure(4, "open-loop-quiet", "p99_ms")
    if any(p99.values()):
        p50, top = t.figure(4, "open-loop-quiet", "p50_ms"), t.figure(4, "open-loop-quiet", "max_ms")
        offered = next((r["offered_per_s"] for r in t.records if r["variant"] == "open-loop-quiet"), None)
        lost = t.figure(4, "open-loop-quiet", "lost")
        cells = {
            s: f"{_num(p50[s], 2)} / {_num(p99[s], 2)} / {_num(top[s])} (lost {lost[s]})"
            for s in t.servers
            if p99[s] is not None
        }
        chat = p99.get(CHAT)
        t.row(
            f"4 open loop {_num(offered, 0)} msg/s · p50 / p99 / max ms",
            cells,
            target="p99 ≤ 5 ms",
            met=None if chat is None else chat <= TARGET_OPEN_P99,
        )


def _idle(t: Table) -> None:
    per = t.figure(5, "idle", "kib_per_socket")
    if not any(v is not None for v in per.values()):
        return
    opened, fan = t.figure(5, "idle", "opened"), t.figure(5, "idle", "fan_out_ms")
    delivered = t.figure(5, "idle", "fan_out_delivered")
    t.row("5 idle · sockets open", {s: f"{opened[s]:,}" for s in t.servers if opened[s] is not None})
    chat = per.get(CHAT)
    t.row(
        "5 idle · server RSS KiB per socket",
        _cells(per),
        target="≤ 30 KiB",
        met=None if chat is None else chat <= TARGET_IDLE_KIB,
    )
    cells = {s: f"{_num(fan[s])} ms ({delivered[s]:,})" for s in t.servers if fan[s] is not None}
    t.row("5 idle · one message to all (delivered)", cells)


def _storm(t: Table) -> None:
    record = _find(t.records, CHAT, 6, "storm")
    if record is None:
        return
    logins, messages = record["logins"], record["messages"]
    t.row("6 login · capacity logins/s (closed loop)", {CHAT: _num(record["capacity_per_s"])})
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(logins["statuses"].items()))
    t.row(f"6 storm · offered {logins['offered_per_s']}/s → answers", {CHAT: statuses})
    t.row(
        "6 storm · 200 p99 / refused p50 / p99 ms",
        {CHAT: " / ".join(_num(logins[key]) for key in ("accepted_p99_ms", "refused_p50_ms", "refused_p99_ms"))},
        target="refused at once",
    )
    ratio = record.get("p99_storm_over_quiet")
    t.row(
        "6 storm · messages p50 / p99 ms during storm (÷ quiet p99)",
        {CHAT: f"{_num(messages['p50_ms'], 2)} / {_num(messages['p99_ms'], 2)} ({_ratio(ratio)})"},
        target="≤ 2× quiet",
        met=None if ratio is None else ratio <= TARGET_STORM,
    )


# counts where the worst round is the one to show (anything lost in any round is lost)
WORST_OF_ROUNDS = {"lost", "duplicated", "not_ok", "acknowledged_missing", "acknowledged_duplicated"}
WORST_OF_ROUNDS |= {"acknowledged_twice", "echo_timeouts", "timeouts", "connect_errors", "read_errors"}
FEWEST_OF_ROUNDS = {"opened", "fan_out_delivered"}


def medians(records: list[dict]) -> list[dict]:
    """One record per server, scenario and variant over the rounds: rates, latencies and sizes (floats) their
    median, a yes/no only yes if yes in every round, the counts of failures and of sockets reached their worst;
    the rest (counts of requests, nested figures) as in the first round."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["server"], record["scenario"], record["variant"]), []).append(record)
    merged = []
    for group in groups.values():
        record = dict(group[0])
        for key, value in record.items():
            values = [r.get(key) for r in group if r.get(key) is not None]
            if isinstance(value, bool):
                record[key] = all(values)
            elif key in WORST_OF_ROUNDS and isinstance(value, int):
                record[key] = max(values)
            elif key in FEWEST_OF_ROUNDS and isinstance(value, int):
                record[key] = min(values)
            elif isinstance(value, float):
                record[key] = statistics.median(values)
        merged.append(record)
    return merged


# (scenario, variant, key, label): what the comparison of two trees of chat shows
COMPARED = (
    (1, "send", "ok_per_s", "1 send · 2xx req/s"),
    (1, "send", "p50_ms", "1 send · p50 ms (wrk)"),
    (1, "send", "p99_ms", "1 send · p99 ms (wrk)"),
    (2, "{history}", "ok_per_s", "2 history · {history} · req/s"),
    (3, "closed-loop", "msg_per_s", "3 closed loop · delivered msg/s"),
    (3, "closed-loop", "p50_ms", "3 closed loop · p50 ms"),
    (3, "closed-loop", "p99_ms", "3 closed loop · p99 ms"),
    (4, "open-loop-quiet", "p50_ms", "4 open loop · p50 ms"),
    (4, "open-loop-quiet", "p99_ms", "4 open loop · p99 ms"),
    (5, "idle", "kib_per_socket", "5 idle · server RSS KiB per socket"),
    (5, "idle", "fan_out_ms", "5 idle · one message to all sockets, ms"),
    (6, "capacity", "logins_per_s", "6 login · capacity logins/s"),
    (6, "storm", "p99_storm_over_quiet", "6 storm · messages p99 during storm ÷ quiet"),
)


def _per_round(records: list[dict], server: str, scenario: int, variant: str, key: str) -> dict[int, float]:
    return {
        r["round"]: r[key]
        for r in records
        if r["server"] == server and r["scenario"] == scenario and r["variant"] == variant and r.get(key) is not None
    }


def _history_variants(records: Iterable[dict]) -> list[str]:
    variants = {r["variant"] for r in records if r["scenario"] == 2 and r["variant"] != "newest-memory"}
    return sorted(variants, key=lambda v: (v.split("-")[0] != "newest", int(v.split("-")[1])))


def comparison(records: list[dict], before: str, after: str = CHAT) -> str:
    """`after` beside `before`, figure by figure: the medians over the rounds, their ratio, and each round's."""
    lines = [
        f"| scenario · figure | {before} | {after} | {after} ÷ {before} | ratio in each round |",
        "|---|---|---|---|---|",
    ]
    for scenario, variant, key, label in COMPARED:
        variants = _history_variants(records) if variant == "{history}" else [variant]
        for name in variants:
            old = _per_round(records, before, scenario, name, key)
            new = _per_round(records, after, scenario, name, key)
            if not old or not new:
                continue
            old_median, new_median = statistics.median(old.values()), statistics.median(new.values())
            rounds = " ".join(_ratio(new[r] / old[r]) for r in sorted(old) if r in new and old[r])
            history = _history_page(name) if scenario == 2 else ""
            lines.append(
                f"| {label.format(history=history)} | {_num(old_median)} | {_num(new_median)} "
                f"| {_ratio(new_median / old_median) if old_median else '—'} | {rounds} |"
            )
    return "\n".join(lines)


def _channel(t: Table) -> None:
    record = _find(t.records, CHAT, 7, "channel")
    if record is None:
        return
    t.row(
        f"7 channel of {record['members']} at {_num(record['offered_per_s'], 0)} msg/s · p50 / p99 / max ms",
        {CHAT: " / ".join(_num(record[key], 2) for key in ("p50_ms", "p99_ms", "max_ms"))},
    )
    t.row(
        "7 channel · deliveries: lost / duplicated",
        {CHAT: f"{record['lost']} / {record['duplicated']} of {record['deliveries']:,}"},
        target="0 / 0",
        met=record["lost"] == 0 and record["duplicated"] == 0,
    )


def table(records: list[dict], machine: dict) -> str:
    rounds = max((r.get("round", 0) for r in records), default=0) + 1
    t = Table(medians(records))
    for section in (_send, _history, _realtime, _idle, _storm, _channel):
        section(t)
    head = f"chat bench {machine['date']} · {machine['nproc']} × {machine['cpu']} · Python {machine['python']}"
    pinning = "servers on CPU 0, load on CPU 1" if machine["pinned"] else "not pinned (one core)"
    if rounds > 1:
        pinning += f" · {rounds} rounds, medians"
    text = f"{head} · {pinning}\n\n{t.markdown()}\n"
    for other in (s for s in t.servers if is_chat(s) and s != CHAT):
        text += f"\n{CHAT} beside {other} (higher is better for /s, lower for ms and KiB):\n\n"
        text += comparison(records, other) + "\n"
    return text
