"""What a bench run does: every knob is a field, set by a flag (--send-seconds 5) or the environment
(BENCH_SEND_SECONDS=5); --smoke starts from tiny values instead of the full run's."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, fields

from .servers import ALL_SERVERS, CHAT


@dataclass
class Options:
    servers: tuple[str, ...] = ALL_SERVERS
    scenarios: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
    # 1: send-message
    send_seconds: int = 10
    send_connections: int = 32
    # 2: history pages
    history_seconds: int = 5
    history_connections: int = 32
    history_sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    # 3 and 4: real time
    pairs: int = 20
    closed_seconds: float = 10.0
    open_rate: float = 200.0
    open_seconds: float = 10.0
    # 5: idle sockets (the threaded reference runs one thread per socket: it gets fewer)
    idle_sockets: int = 10_000
    idle_sockets_threading: int = 1_000
    # 6: login storm (chat)
    capacity_seconds: float = 5.0
    storm_seconds: float = 30.0
    storm_factor: float = 2.0
    # 7: a channel (chat): every member with a socket, messages at a fixed rate from the members in turn
    channel_members: int = 50
    channel_rate: float = 50.0
    channel_seconds: float = 10.0
    # how the servers run
    bcrypt_rounds: int = 12
    worker_class: str = "uvloop"  # hypercorn's --worker-class for chat and the bare servers ("asyncio" or "uvloop")
    # as root, the servers and the load generator run at this niceness, so that other work on a shared machine
    # disturbs the figures less (0: leave as is)
    nice: int = -20
    smoke: bool = False
    results_dir: str = "bench/results"

    @property
    def users(self) -> int:
        channel = self.channel_members if 7 in self.scenarios else 0
        return max(2 * self.pairs, channel)


SMOKE = {
    "servers": (CHAT,),
    "send_seconds": 1,
    "send_connections": 4,
    "history_seconds": 1,
    "history_connections": 4,
    "history_sizes": (100, 2_000),
    "pairs": 2,
    "closed_seconds": 0.5,
    "open_rate": 50.0,
    "open_seconds": 0.5,
    "idle_sockets": 20,
    "idle_sockets_threading": 10,
    "capacity_seconds": 0.5,
    "storm_seconds": 1.0,
    "channel_members": 5,
    "channel_rate": 20.0,
    "channel_seconds": 0.5,
    "bcrypt_rounds": 4,
}


def _parse(field: dataclasses.Field, raw: str) -> object:
    kind = str(field.type)
    if kind.startswith("tuple"):
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        return tuple(int(part) for part in parts) if "int" in kind else tuple(parts)
    if kind == "bool":
        return raw.lower() in ("1", "true", "yes", "on")
    return {"int": int, "float": float}.get(kind, str)(raw)


def parse(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Options:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    for field in fields(Options):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action="store_true", default=None)
        else:
            parser.add_argument(flag, default=None, help=f"(env BENCH_{field.name.upper()}; default {field.default})")
    args = vars(parser.parse_args(argv))
    smoke = args["smoke"] or environ.get("BENCH_SMOKE", "").lower() in ("1", "true", "yes")
    values: dict[str, object] = dict(SMOKE) if smoke else {}
    values["smoke"] = smoke
    for field in fields(Options):
        if field.name == "smoke":
            continue
        raw = args[field.name] if args[field.name] is not None else environ.get(f"BENCH_{field.name.upper()}")
        if raw is not None and raw != "":
            values[field.name] = _parse(field, str(raw))
    options = Options(**values)
    unknown = set(options.servers) - set(ALL_SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}: choose from {', '.join(ALL_SERVERS)}")
    return options
