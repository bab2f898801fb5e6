"""`meterguard db`: migrate the alert database, show its revision, create users."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from meterguard.roles import ROLE_NAMES

NAME = "db"
HELP = "alert database: upgrade the schema, show its revision, add users"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the actions and where the database is."""
    parser.add_argument(
        "action",
        choices=["upgrade", "current", "add-user"],
        help="upgrade: run the migrations; current: print the revision; add-user: print a token",
    )
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="TOML config file naming the database (default: ./meterguard.toml if present)",
    )
    parser.add_argument("--url", default=None, help="SQLAlchemy URL, overriding the config")
    parser.add_argument("--revision", default="head", help="upgrade: target (default: head)")
    parser.add_argument("--name", default=None, help="add-user: user name")
    parser.add_argument(
        "--role",
        default="operator",
        choices=ROLE_NAMES,
        help="add-user: role (default operator)",
    )
    parser.add_argument(
        "--by", default="cli", help="add-user: who creates the user, for the audit log"
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="add-user: read the user's login password from the first line of stdin",
    )


def _url(args: argparse.Namespace) -> str:
    from meterguard.settings import load_settings
    from meterguard.stores.factory import alert_db_url

    if args.url:
        return str(args.url)
    config = args.config
    if config is None and Path("meterguard.toml").exists():
        config = Path("meterguard.toml")
    return alert_db_url(load_settings(config).storage)


async def _main(args: argparse.Namespace) -> int:
    from meterguard.stores.alertdb import AlertDatabase
    from meterguard.stores.alertdb.migrate import current_revision, head_revision, upgrade

    db = AlertDatabase(_url(args))
    try:
        if args.action == "upgrade":
            await upgrade(db.engine, args.revision)
            print(f"alert database at revision {await current_revision(db.engine)}")
        elif args.action == "current":
            current = await current_revision(db.engine)
            print(f"{current or 'empty'} (code: {head_revision()})")
        else:
            if not args.name:
                print("add-user needs --name")
                return 2
            password = None
            if args.password_stdin:
                # Not a command-line argument: those show up in the process list.
                password = sys.stdin.readline().rstrip("\r\n")
            try:
                user, token = await db.users.create_user(
                    args.name, args.role, created_by=args.by, password=password
                )
            except ValueError as exc:
                print(f"add-user: {exc}", file=sys.stderr)
                return 2
            login = " (may log in with the password)" if user.has_password else ""
            print(f"user {user.name} ({user.role}) token: {token}{login}")
    finally:
        await db.close()
    return 0


def run(args: argparse.Namespace) -> int:
    """Carry out the action."""
    return asyncio.run(_main(args))
