"""`chat backup PATH`: a consistent copy of the database taken while the server runs.

SQLite: `VACUUM INTO` reads the database in one transaction, so the copy is the database as it was at one
instant (in WAL mode the server's writers are not blocked meanwhile), compacted, with no WAL beside it: a single
file that is ready to serve. PostgreSQL: `pg_dump --format=custom`, which is consistent in the same way (one
snapshot) and restored with `pg_restore` (docs/operations.md, "Backups").

The files store: when the instance folder holds a `files/` folder (uploads kept on the local disk, the default
of CHAT_FILES_URL), it is copied beside the database's copy, to `PATH.files/`, after the database. A stored file
never changes once it is in place (the store writes it under a temporary name and renames it), so every file
the database's copy names is in the folder's copy; files stored meanwhile may be too, and are harmless.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .config import Settings
from .instance import private_file


class BackupError(RuntimeError):
    """The copy could not be made; the message says why (nothing is left half-written at PATH)."""


FILES_FOLDER = "files"  # the files store in the instance folder (CHAT_FILES_URL's default)
# what the store writes before the rename that puts a file in place: never part of a copy
UNFINISHED = (".tmp-*", "*.part")


@dataclass(frozen=True)
class Backup:
    database: Path
    files: Path | None  # None: the instance has no files store of its own
    file_count: int = 0


def files_copy_of(target: Path) -> Path:
    return target.with_name(target.name + ".files")


def backup(settings: Settings, target: Path) -> Backup:
    """Copy the configured database to `target` and the instance's files store to `target.files/`; neither may
    exist yet."""
    store = settings.instance_path / FILES_FOLDER
    files_target = files_copy_of(target) if store.is_dir() else None
    for path in (target, files_target):
        if path is not None and (path.exists() or path.is_symlink()):
            raise BackupError(f"{path} exists already: a backup never overwrites a file")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder")
    if settings.is_postgres:
        _pg_dump(settings.resolved_database_url, target)
    elif settings.sqlite_path is not None:
        _vacuum_into(settings.sqlite_path, target)
    else:
        raise BackupError("an in-memory database has nothing to back up")
    if files_target is None:
        return Backup(target, None)
    return Backup(target, files_target, _copy_files(store, files_target))


def _copy_files(store: Path, files_target: Path) -> int:
    """Copy the store's finished files (their times kept) into a new folder only its owner reads; their count."""
    try:
        shutil.copytree(store, files_target, ignore=shutil.ignore_patterns(*UNFINISHED), symlinks=True)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(files_target, ignore_errors=True)
        raise BackupError(f"the database was copied, the files store was not: {exc}") from None
    files_target.chmod(0o700)  # people's uploads: as private as the database's copy
    return sum(1 for path in files_target.rglob("*") if path.is_file())


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
