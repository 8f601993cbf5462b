"""The ``codemonkeys`` command.

Each command module exposes ``register(app)``; this module wires them up and is
the only place that turns outcomes into exit codes (see :data:`EXIT_CODES`).
Click's exceptions are recognised by class name, not by ``isinstance``: typer
0.29 raises the classes of its own bundled click copy, older typers those of
the installed ``click``, and both must end in one line without a traceback.
"""

from __future__ import annotations

import errno
import logging
import sys

import typer
from rich.console import Console

from ..errors import UserError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "everything asked for finished",
    EXIT_FAILED: "finished, but some instances failed",
    EXIT_USER_ERROR: "user error (arguments, config, input, unusable run directory): one line says what",
    EXIT_INTERRUPTED: "interrupted: rerun the same command to resume",
}
INTERRUPTED_LINE = "interrupted; rerun the same command to resume"

# OSErrors about a path the user gave (a run dir that is a file, a read-only parent...).
_USER_OS_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOSPC,
}


def _help_epilog() -> str:
    lines = "\n".join(f"{code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"Exit codes:\n\n\b\n{lines}"


def build_app() -> typer.Typer:
    """The Typer app with every command module registered."""
    from . import commands

    app = typer.Typer(
        name="codemonkeys",
        help="Resolve SWE-bench issues by scaling test-time compute.",
        epilog=_help_epilog(),
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
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


def _error_line(message: str) -> None:
    text = " ".join(str(message).split()) or "unknown error"
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {text}", highlight=False, markup=True)


def _click_names(exc: BaseException) -> set[str]:
    mro = type(exc).__mro__
    return {cls.__name__ for cls in mro if "click" in cls.__module__ or cls.__module__.startswith("typer")}


def _click_outcome(exc: BaseException) -> int | None:
    """The exit code of a click-style exception from any click copy, after printing its one line."""
    names = _click_names(exc)
    if "Exit" in names:
        return _exit_code(getattr(exc, "exit_code", EXIT_OK))
    if "Abort" in names:  # click turns Ctrl-C (and EOF at a prompt) into Abort
        return _exit_code(EXIT_INTERRUPTED)
    if "NoArgsIsHelpError" in names:  # click >= 8.2: the help itself, as click prints it
        format_message = getattr(exc, "format_message", None)
        typer.echo(format_message() if callable(format_message) else str(exc))
        return EXIT_USER_ERROR
    if "ClickException" in names:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        ctx = getattr(exc, "ctx", None)
        path = getattr(ctx, "command_path", None)
        hint = f" (see `{path} --help`)" if path and "UsageError" in names else ""
        _error_line(f"{message}{hint}")
        return EXIT_USER_ERROR
    return None


def _exit_code(code: object) -> int:
    if code == EXIT_INTERRUPTED:
        Console(stderr=True).print(INTERRUPTED_LINE, highlight=False)
    if isinstance(code, int):
        return code
    return EXIT_OK if code is None else EXIT_FAILED


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` and return its exit code (see :data:`EXIT_CODES`)."""
    try:
        app = build_app()
        result = app(args=argv, standalone_mode=False)
    except UserError as exc:
        _error_line(str(exc))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return _exit_code(EXIT_INTERRUPTED)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except OSError as exc:
        if exc.errno in _USER_OS_ERRNOS and exc.filename is not None:
            _error_line(f"{exc.filename}: {exc.strerror}")
            return EXIT_USER_ERROR
        raise
    except Exception as exc:
        code = _click_outcome(exc)
        if code is None:
            raise
        return code
    return _exit_code(result) if isinstance(result, int) else EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; returns normally only on success."""
    code = run(argv)
    if code != EXIT_OK:
        sys.exit(code)
