"""The `chat` command: operations that run outside the web server."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
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


async def _createuser(username: str, email: str, password: str) -> int:
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
        user = await create_account(data.username, data.email, password_hash)
    except APIError:
        print("that username or email is already registered", file=sys.stderr)
        return 1
    finally:
        await close_db()
    print(f"created user {user.id} ({user.username})")
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
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
            return asyncio.run(_createuser(args.username, args.email, password))
        if args.command == "certs":
            return _certs(args.dir, args.name, args.client_name, args.new_ca)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
