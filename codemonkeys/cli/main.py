"""The ``codemonkeys`` command.

Each command module exposes ``register(app)``; this module wires them up and is
the only place that turns errors into exit codes: a user error (bad config,
missing key, unknown provider, bad data) prints one line and exits 2, without a
traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from ..errors import UserError

EXIT_USER_ERROR = 2


def build_app() -> typer.Typer:
    """The Typer app with every command module registered."""
    from . import commands

    app = typer.Typer(
        name="codemonkeys",
        help="Resolve SWE-bench issues by scaling test-time compute.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    for module in commands.modules():
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    app = build_app()
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
