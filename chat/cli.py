"""The `chat` command: operations that run outside the web server."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from tortoise.exceptions import IntegrityError

from .config import ConfigError, load_settings
from .db import close_db, init_db


async def _migrate() -> None:
    settings = load_settings(migrate=True)
    await init_db(settings)
    await close_db()
    print(f"database is up to date ({settings.resolved_database_url.split('?')[0].split('@')[-1]})")


async def _createuser(username: str, email: str, password: str) -> int:
    from pydantic import ValidationError

    from .models import User
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
        password_hash = await asyncio.to_thread(hash_password_sync, data.password, settings.bcrypt_rounds)
        user = await User.create(
            username=data.username, username_key=data.username.lower(), email=data.email, password_hash=password_hash
        )
    except IntegrityError:
        print("that username or email is already registered", file=sys.stderr)
        return 1
    finally:
        await close_db()
    print(f"created user {user.id} ({user.username})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the database schema up to date")
    create = commands.add_parser("createuser", help="create an account")
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            asyncio.run(_migrate())
            return 0
        if args.command == "createuser":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
            return asyncio.run(_createuser(args.username, args.email, password))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
