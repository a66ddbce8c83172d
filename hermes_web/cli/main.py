"""``hermes-web``: ``serve``, ``compact``, ``doctor``, ``set-password`` and ``token``. Thin wrappers over
plain functions."""

import argparse
import sys

from hermes_web import installed_version
from hermes_web.cli import auth_commands
from hermes_web.core.config import Config, ConfigError
from hermes_web.core.startup import StartupError


class Parser(argparse.ArgumentParser):
    """Usage errors are one line, like every other start-up error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hermes-web", description="Durable chat UI for LLM agents.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the UI and API")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, env HERMES_WEB_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8787, env HERMES_WEB_PORT)")
    serve.add_argument("--data-dir", help="data root (default ./var, env HERMES_WEB_DATA_DIR)")
    serve.add_argument("--certfile", help="serve HTTPS with this certificate (PEM; env HERMES_WEB_CERTFILE)")
    serve.add_argument("--keyfile", help="the certificate's private key (PEM; env HERMES_WEB_KEYFILE)")
    serve.add_argument("--auth-by-proxy", action="store_const", const=True,
                       help="ask for no login: an authenticating reverse proxy decides (env HERMES_WEB_AUTH_BY_PROXY)")

    compact = commands.add_parser("compact", help="fold finished runs into transcripts; apply retention")
    compact.add_argument("--data-dir", help="data root (default ./var, env HERMES_WEB_DATA_DIR)")
    compact.add_argument("--session", help="only this session")
    compact.add_argument("--older-than", default="1h", help="only runs that ended this long ago (e.g. 30m, 1h, 2d; 0 = all)")
    mode = compact.add_mutually_exclusive_group()
    mode.add_argument("--archive", dest="mode", action="store_const", const="archive", help="gzip journals under archive/ (default)")
    mode.add_argument("--delete", dest="mode", action="store_const", const="delete", help="delete journals once folded")
    compact.add_argument("--keep-archives", help="prune archives older than this (e.g. 30d)")
    compact.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    compact.add_argument("--wait", action="store_true", help="wait for a running compaction instead of exiting")
    compact.add_argument("--salvage", action="store_true",
                         help="also fold runs with damaged lines (what decodes); their journals are kept in archive/")
    doctor = commands.add_parser("doctor", help="check the data dir (or the shared store) against the on-disk "
                                                "contract; --fix repairs what is safe")
    doctor.add_argument("--data-dir", help="data root (default ./var, env HERMES_WEB_DATA_DIR)")
    doctor.add_argument("--fix", action="store_true",
                        help="repair what is safe: index runs, drop stale markers, tighten modes (never live runs)")
    auth_commands.add_parsers(commands)
    return parser


def main(argv=None) -> int:
    """Run one command; a start-up failure is one line on stderr: exit 2 for configuration, else 1."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as error:
        return _fail(f"configuration error: {error}", 2)
    except StartupError as error:
        return _fail(str(error), 1)


def run(args) -> int:
    config = Config.from_env(
        data_dir=args.data_dir,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        certfile=getattr(args, "certfile", None),
        keyfile=getattr(args, "keyfile", None),
        auth_by_proxy=getattr(args, "auth_by_proxy", None),
    )
    if args.command in auth_commands.COMMANDS:
        return auth_commands.run(config, args)
    if args.command == "serve":
        from hermes_web.cli.serve import serve

        return serve(config)
    if args.command == "doctor":
        from hermes_web.doctor.command import run_from_cli as doctor

        return doctor(config, args)
    from hermes_web.compaction.command import run_from_cli

    return run_from_cli(config, args)


def _fail(message: str, code: int) -> int:
    print("hermes-web: " + " ".join(message.splitlines()), file=sys.stderr, flush=True)
    return code
