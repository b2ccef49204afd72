"""The one markdown table of a run: figures per server, ratios, targets."""

from __future__ import annotations

from .servers import ALL_SERVERS, BARE_QUART, CHAT, FLASK_SERVERS

TARGET_SEND_FLASK, TARGET_SEND_BARE, TARGET_SEND_P99 = 3.0, 0.5, 50.0
TARGET_HISTORY_FLASK, TARGET_HISTORY_SLOWDOWN = 3.0, 0.10
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
        self.servers = [s for s in ALL_SERVERS if any(r["server"] == s for r in records)]
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


def _cells(figures: dict, digits: int = 1, suffix: str = "") -> dict[str, str]:
    return {server: _num(value, digits) + (suffix if value is not None else "") for server, value in figures.items()}


def _send(t: Table) -> None:
    rps = t.figure(1, "send", "ok_per_s")
    if not any(rps.values()):
        return
    to_flask, to_bare = t.ratios(rps)
    met = (
        None
        if to_flask is None and to_bare is None
        else ((to_flask is None or to_flask >= TARGET_SEND_FLASK) and (to_bare is None or to_bare >= TARGET_SEND_BARE))
    )
    t.row("1 send · 2xx req/s", _cells(rps, 0), to_flask, to_bare, "≥3× Flask, ≥0.5× bare Quart", met)
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
        shape, size = variant.split("-")
        label = f"2 history · {'newest 50' if shape == 'newest' else 'before= middle'} of {int(size):,} · req/s"
        t.row(
            label,
            cells,
            to_flask,
            to_bare if shape == "newest" else None,
            "≥3× Flask",
            None if to_flask is None else to_flask >= TARGET_HISTORY_FLASK,
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
    t = Table(records)
    for section in (_send, _history, _realtime, _idle, _storm, _channel):
        section(t)
    head = f"chat bench {machine['date']} · {machine['nproc']} × {machine['cpu']} · Python {machine['python']}"
    pinning = "servers on CPU 0, load on CPU 1" if machine["pinned"] else "not pinned (one core)"
    return f"{head} · {pinning}\n\n{t.markdown()}\n"
