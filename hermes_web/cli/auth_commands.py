"""``hermes-web set-password`` and ``hermes-web token create|list|revoke``: thin wrappers over
:mod:`hermes_web.security.auth_state`, on the store the server uses (the data dir's
``auth/``, or the shared Redis of ``HERMES_WEB_STORE``). A running server sees each change
at its next request."""

import argparse
import datetime
import getpass
import sys

from hermes_web.security import auth, auth_state
from hermes_web.store.logstore import StoreUnavailable

COMMANDS = ("set-password", "token")


def add_parsers(commands) -> None:
    """Add the commands to ``hermes-web``'s sub-command parsers."""
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", help="data root (default ./var, env HERMES_WEB_DATA_DIR)")
    commands.add_parser("set-password", parents=[data_dir],
                        help="set the login password (asked twice, or one line on stdin)")
    token = commands.add_parser("token", help="bearer tokens for scripts: create, list, revoke")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", parents=[data_dir], help="make a token (printed once, stored hashed)")
    create.add_argument("name", help="what the token is for, e.g. 'backup-script'")
    actions.add_parser("list", parents=[data_dir], help="the tokens' names and creation times")
    revoke = actions.add_parser("revoke", parents=[data_dir], help="stop a token working at once")
    revoke.add_argument("name")


def run(config, args, stdin=None, stdout=None, stderr=None) -> int:
    """Run one of :data:`COMMANDS`; the exit status."""
    from hermes_web.app import open_auth_state

    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    state = open_auth_state(config)
    try:
        if args.command == "set-password":
            return set_password(config, state, stdin, stdout)
        if args.token_command == "create":
            token = auth_state.create_token(state, args.name)
            print(token, file=stdout)
            print(f"token {args.name!r} created; it is shown only now. Send it as 'Authorization: Bearer <token>'.",
                  file=stderr)
            return 0
        if args.token_command == "list":
            for item in state.tokens():
                created = datetime.datetime.fromtimestamp(item.get("created_at", 0)).isoformat(timespec="seconds")
                print(f"{item.get('name')}\tcreated {created}", file=stdout)
            return 0
        if state.revoke_token(args.name):
            print(f"token {args.name!r} revoked", file=stderr)
            return 0
        print(f"hermes-web: no token named {args.name!r}", file=stderr)
        return 1
    except auth.AuthError as error:
        print(f"hermes-web: {error}", file=stderr)
        return 2
    except StoreUnavailable as error:
        print(f"hermes-web: {error}", file=stderr)
        return 1


def set_password(config, state, stdin, stdout) -> int:
    if stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise auth.AuthError("the two passwords differ; nothing changed")
    else:
        password = stdin.readline().rstrip("\r\n")
    auth_state.set_password(state, password)
    if config.password:
        print("hermes-web: note: HERMES_WEB_PASSWORD is set and wins over the stored password", file=sys.stderr)
    print(f"password set in {state.where}; a running server uses it from now on "
          "(and every browser logs in again)", file=stdout)
    return 0
