"""`chat backup PATH`: a consistent copy of the database taken while the server runs.

SQLite: `VACUUM INTO` reads the database in one transaction, so the copy is the database as it was at one
instant (in WAL mode the server's writers are not blocked meanwhile), compacted, with no WAL beside it: a single
file that is ready to serve. PostgreSQL: `pg_dump --format=custom`, which is consistent in the same way (one
snapshot) and restored with `pg_restore` (docs/operations.md, "Backups").
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .config import Settings
from .instance import private_file


class BackupError(RuntimeError):
    """The copy could not be made; the message says why (nothing is left half-written at PATH)."""


def backup(settings: Settings, target: Path) -> Path:
    """Copy the configured database to `target`, which must not exist yet; returns it."""
    if target.exists():
        raise BackupError(f"{target} exists already: a backup never overwrites a file")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder")
    if settings.is_postgres:
        _pg_dump(settings.resolved_database_url, target)
    elif settings.sqlite_path is not None:
        _vacuum_into(settings.sqlite_path, target)
    else:
        raise BackupError("an in-memory database has nothing to back up")
    return target


def _vacuum_into(database: Path, target: Path) -> None:
    if not database.exists():
        raise BackupError(f"{database} does not exist: nothing to back up")
    private_file(target)  # empty and 0600 from the start: the copy holds password hashes
    try:
        # read-only: a backup never writes to the live database (nor creates it)
        uri = f"{database.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as connection:
            connection.execute("PRAGMA busy_timeout = 10000")
            connection.execute("VACUUM INTO ?", (str(target),))
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise BackupError(f"the copy failed: {exc}") from None


def _libpq_environment(url: str) -> dict[str, str]:
    """The connection as libpq's variables: not on the command line, which `ps` shows to everyone."""
    parts = urlsplit(url)
    variables = {
        "PGHOST": parts.hostname,
        "PGPORT": str(parts.port) if parts.port else None,
        "PGUSER": unquote(parts.username) if parts.username else None,
        "PGPASSWORD": unquote(parts.password) if parts.password else None,
        "PGDATABASE": unquote(parts.path.lstrip("/")) or None,
    }
    return {name: value for name, value in variables.items() if value}


def _pg_dump(url: str, target: Path) -> None:
    private_file(target)
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments, the target a path
            ["pg_dump", "--format=custom", "--no-owner", "--file", str(target)],  # noqa: S607 - the PATH's pg_dump
            env={**os.environ, **_libpq_environment(url)},
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        target.unlink(missing_ok=True)
        raise BackupError("pg_dump is not installed (Debian: apt install postgresql-client)") from None
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
