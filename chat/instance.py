"""The instance folder and the SQLite files are the server's alone: folders 0700, files 0600.

They hold the session-signing key and every message. The modes are set where each is created (not through a
process umask, which would also narrow what the rest of the process writes), and a folder or file found wider at
start-up, from an older version or a copy, is narrowed then.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600
# what SQLite keeps beside a database file; it gives the -wal and -shm files the database file's own mode
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal", ".migrate.lock")


def narrow_mode(path: Path, allowed: int) -> None:
    """Take away from `path` every permission bit outside `allowed` (a narrower mode stays as it is)."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~allowed:
        try:
            os.chmod(path, current & allowed)
        except PermissionError:  # another user's file: say so, the server can still run
            log.warning("cannot narrow %s to mode %o: it belongs to another user", path, current & allowed)


def private_folder(path: Path) -> Path:
    """`path` as a folder only this user may enter, created if missing (parents too, as the umask says)."""
    path.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    narrow_mode(path, PRIVATE_FOLDER)
    return path


def private_file(path: Path) -> Path:
    """`path` as a file only this user may read, created empty (mode 0600 from the start) if missing."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    narrow_mode(path, PRIVATE_FILE)
    return path


def secure_instance_folder(path: Path) -> None:
    """Narrow an existing instance folder to 0700 and the files directly in it to 0600."""
    if not path.is_dir():
        return
    narrow_mode(path, PRIVATE_FOLDER)
    for child in path.iterdir():
        if child.is_file() and not child.is_symlink():
            narrow_mode(child, PRIVATE_FILE)


def private_sqlite_file(path: Path) -> Path:
    """Create the database file 0600 before SQLite opens it (SQLite would create it 0644), and narrow the files
    beside it. A folder that has to be made for it is made 0700; an existing one is the operator's to choose."""
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            narrow_mode(companion, PRIVATE_FILE)
    return path
