"""``codemonkeys config show``: print the resolved configuration."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.syntax import Syntax

from ..config import dump_config, load_config


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Inspect configurations.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("show")
    def show(
        config: str = typer.Argument(..., help="Config file, or the name of a shipped one (e.g. verified)."),
        overrides: list[str] = typer.Argument(None, help="key.path=value overrides."),
        plain: bool = typer.Option(False, help="Print plain YAML without colours."),
    ) -> None:
        """Print CONFIG with overrides applied and every default filled in."""
        from ..llm.preflight import check_model_strings

        resolved = load_config(Path(config) if Path(config).exists() else config, overrides or [])
        check_model_strings(resolved)  # the rule `run` applies, so show never accepts what run rejects
        text = dump_config(resolved)
        console = Console()
        if plain or not console.is_terminal:
            typer.echo(text, nl=False)
        else:
            console.print(Syntax(text, "yaml"))
