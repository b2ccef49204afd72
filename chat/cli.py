"""The `chat` command: operations that run outside the web server."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from .config import ConfigError, load_settings
from .db import close_db, init_db


async def _migrate() -> None:
    settings = load_settings(migrate=True)
    await init_db(settings)
    await close_db()
    print(f"database is up to date ({settings.resolved_database_url.split('?')[0].split('@')[-1]})")


async def _reindex() -> None:
    from .search import reindex

    await init_db(load_settings(migrate=True))
    try:
        count = await reindex()
    finally:
        await close_db()
    print(f"search index rebuilt: {count} messages")


async def _createuser(username: str, email: str, password: str, admin: bool = False) -> int:
    from pydantic import ValidationError

    from .accounts import create_account
    from .errors import APIError
    from .schemas import RegisterIn
    from .security import hash_password_sync

    try:
        data = RegisterIn(username=username, email=email, password=password)
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            print(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    settings = load_settings()
    await init_db(settings)
    try:
        # no HashGate here (it belongs to a running app): one hash, in a thread, with the configured cost
        password_hash = await asyncio.to_thread(hash_password_sync, data.password, settings.bcrypt_rounds)
        user = await create_account(data.username, data.email, password_hash, is_admin=admin)
    except APIError:
        print("that username or email is already registered", file=sys.stderr)
        return 1
    finally:
        await close_db()
    print(f"created {'admin' if admin else 'user'} {user.id} ({user.username})")
    return 0


async def _in_running_app(step: Callable[[], Awaitable[int]]) -> int:
    """Run a step of the domain inside a started application (database, broker): what it publishes (sessions
    ended, sockets to close) reaches every worker of the deployment through Redis."""
    from . import create_app

    app = create_app()
    async with app.test_app(), app.app_context():
        return await step()


async def _named_user(name: str):
    from .models import User

    user = await User.get_or_none(username_key=name.lower(), deleted_at=None)
    if user is None:
        print(f"no user named {name!r}", file=sys.stderr)
    return user


def _set_active(name: str, active: bool) -> Callable[[], Awaitable[int]]:
    async def step() -> int:
        from .accounts import deactivate_account, reactivate_account

        user = await _named_user(name)
        if user is None:
            return 1
        await (reactivate_account(user) if active else deactivate_account(user))
        print(f"{'reactivated' if active else 'deactivated'} user {user.id} ({user.username})")
        return 0

    return step


def _delete_user(name: str) -> Callable[[], Awaitable[int]]:
    async def step() -> int:
        from .accounts import delete_account

        user = await _named_user(name)
        if user is None:
            return 1
        await delete_account(user)
        print(f"deleted user {user.id} ({user.username}): its name and email are free, its messages stay")
        return 0

    return step


def _set_password(name: str, password: str) -> Callable[[], Awaitable[int]]:
    async def step() -> int:
        from pydantic import TypeAdapter, ValidationError

        from .accounts import reset_password
        from .schemas import Password

        try:
            password_ok = TypeAdapter(Password).validate_python(password)
        except ValidationError as exc:
            for error in exc.errors(include_input=False):
                print(f"password: {error['msg']}", file=sys.stderr)
            return 2
        user = await _named_user(name)
        if user is None:
            return 1
        await reset_password(user, password_ok)
        print(f"password changed for user {user.id} ({user.username}); every session of it ended")
        return 0

    return step


def _read_password(from_stdin: bool) -> str:
    return sys.stdin.readline().rstrip("\n") if from_stdin else getpass.getpass("Password: ")


def _backup(target: Path) -> int:
    from .backup import BackupError, backup

    try:
        written = backup(load_settings(), target)
    except BackupError as exc:
        print(f"chat backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup written to {written.database} ({written.database.stat().st_size} bytes)")
    if written.files is not None:
        print(f"files store copied to {written.files} ({written.file_count} files)")
    return 0


async def _export(target: Path, username: str | None) -> int:
    from . import exports
    from .instance import private_file

    await init_db(load_settings())
    try:
        user = None
        if username is not None and (user := await _named_user(username)) is None:
            return 1
        scope = exports.USER if user is not None else exports.INSTANCE
        with open(private_file(target), "wb") as out:  # noqa: ASYNC230 - a local file, written in chunks
            async for chunk in exports.export_stream(scope, user, with_secrets=user is None):
                out.write(chunk)
    finally:
        await close_db()
    print(f"exported {'user ' + username if username else 'the instance'} to {target}")
    return 0


def _read_export(source: Path) -> object:
    import orjson

    try:
        return orjson.loads(source.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"chat import: cannot read {source}: {exc}", file=sys.stderr)
        return None


async def _import(document: object) -> int:
    from . import exports

    await init_db(load_settings())
    try:
        counts = await exports.import_instance(document)
    except (exports.ImportRefused, KeyError, TypeError, ValueError) as exc:
        reason = exc if isinstance(exc, exports.ImportRefused) else "a malformed export"
        print(f"chat import: {reason}", file=sys.stderr)
        return 2
    finally:
        await close_db()
    print("imported " + ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in counts.items()))
    return 0


def _certs(directory: Path, names: list[str], client_name: str, new_ca: bool) -> int:
    from .certs import write_certificates

    try:
        issued = write_certificates(directory, tuple(names), client_name=client_name, new_ca=new_ca)
    except (ValueError, OSError) as exc:
        print(f"chat certs: {exc}", file=sys.stderr)
        return 2
    authority = "new authority" if issued.ca_created else "existing authority"
    print(f"{issued.ca_cert}: {authority} (clients trust this file)")
    print(f"{issued.server_cert}, {issued.server_key}: server certificate for {', '.join(issued.names)}")
    print(f"{issued.client_cert}, {issued.client_key}: client certificate")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the database schema up to date")
    commands.add_parser("reindex", help="rebuild the search index from the stored messages")
    create = commands.add_parser("createuser", help="create an account")
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.add_argument("--admin", action="store_true", help="give the account the admin role")
    for name, text in (
        ("deactivate", "end every session of an account and refuse its sign-ins"),
        ("reactivate", "let a deactivated account sign in again"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("username")
    backup = commands.add_parser(
        "backup",
        help="copy the database, consistently, while the server runs (SQLite: one file; PostgreSQL: pg_dump), "
        "and the instance's files/ store to PATH.files/",
    )
    backup.add_argument("path", type=Path, help="the file to write (it must not exist)")
    export = commands.add_parser("export", help="write the whole instance (or one user's data) as JSON")
    export.add_argument("path", type=Path, help="the file to write (it must not exist)")
    export.add_argument("--user", metavar="NAME", help="only this user's account and messages (no password hash)")
    import_ = commands.add_parser("import", help="read a whole-instance export into an empty instance")
    import_.add_argument("path", type=Path)
    delete = commands.add_parser(
        "delete-user", help="delete an account: its name and email are freed, its messages stay as from a deleted user"
    )
    delete.add_argument("username")
    set_password = commands.add_parser("set-password", help="set an account's password; every session of it ends")
    set_password.add_argument("username")
    set_password.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    certs = commands.add_parser(
        "certs", help="write a local certificate authority and server and client certificates signed by it"
    )
    certs.add_argument("--dir", type=Path, default=Path("certs"), help="where to write them (default: certs)")
    certs.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="HOST",
        help="another DNS name or IP address the server certificate covers, beyond localhost, 127.0.0.1 and ::1 "
        "(repeat for more)",
    )
    certs.add_argument("--client-name", default="chat client", help="the client certificate's common name")
    certs.add_argument(
        "--new-ca",
        action="store_true",
        help="replace the certificate authority too (clients that trusted the old one must trust the new one)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            asyncio.run(_migrate())
            return 0
        if args.command == "reindex":
            asyncio.run(_reindex())
            return 0
        if args.command == "createuser":
            password = _read_password(args.password_stdin)
            return asyncio.run(_createuser(args.username, args.email, password, args.admin))
        if args.command in ("deactivate", "reactivate"):
            return asyncio.run(_in_running_app(_set_active(args.username, args.command == "reactivate")))
        if args.command == "backup":
            return _backup(args.path)
        if args.command == "export":
            if args.path.exists():
                print(f"chat export: {args.path} exists already", file=sys.stderr)
                return 1
            return asyncio.run(_export(args.path, args.user))
        if args.command == "import":
            document = _read_export(args.path)
            return 2 if document is None else asyncio.run(_import(document))
        if args.command == "delete-user":
            return asyncio.run(_in_running_app(_delete_user(args.username)))
        if args.command == "set-password":
            password = _read_password(args.password_stdin)
            return asyncio.run(_in_running_app(_set_password(args.username, password)))
        if args.command == "certs":
            return _certs(args.dir, args.name, args.client_name, args.new_ca)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
