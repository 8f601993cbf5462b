"""What several commands share: reading the config the way every command takes it."""

from __future__ import annotations

from pathlib import Path

from ..config import Config, load_config
from ..errors import UserError


def load_cli_config(config: str | None, overrides: list[str] | None, mirror_dir: Path | None) -> Config:
    """The config of ``--config`` (a file or shipped name), ``--set``/positional overrides and ``--mirror-dir``."""
    extra = list(overrides or [])
    if mirror_dir is not None:
        if not mirror_dir.is_dir():
            raise UserError(f"--mirror-dir {mirror_dir} is not a directory")
        extra.append(f"environment.mirror_dir={mirror_dir.resolve()}")
    return load_config(config, extra)
