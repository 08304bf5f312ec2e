"""The `mlops` command.

Only the standard library is imported at module level so that `mlops --help`
stays fast; each subcommand imports what it needs when it runs. User errors
(ConfigError and the other *Error classes listed in USER_ERRORS) end with one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2


def _add_env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        default=None,
        help="environment overlay in config/env/ (default: $MLOPS_ENV or dev)",
    )


def _cmd_config_show(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    cfg = load_config(args.env)
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(cfg.as_dict(), indent=2, sort_keys=True))
        return 0
    print(f"environment: {cfg.env}   (from {', '.join(cfg.files)})")
    print("\nnames:")
    for kind, name in cfg.names.items():
        print(f"  {kind:<22} {name}")
    print("\ndata:")
    for key, uri in cfg.data_uris.items():
        print(f"  {key:<22} {uri}")
    print("\nsettings:")
    import yaml

    text = yaml.safe_dump(cfg.settings.model_dump(mode="json"), sort_keys=False)
    print("\n".join("  " + line for line in text.splitlines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="GitOps MLOps on AWS: render, validate, deploy and run the retraining workflow, "
        "against AWS or the embedded local cloud.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = sub.add_parser("config", help="inspect the resolved project config")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print the resolved config and every derived name")
    _add_env(show)
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(handler=_cmd_config_show)

    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    # Imported lazily: the modules defining these pull in pydantic and boto3.
    from pipeline.config import ConfigError

    return (ConfigError,)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
