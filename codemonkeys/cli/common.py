"""What several commands share: reading the config the way every command takes it, checking a run directory."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config, load_config
from ..errors import UserError
from ..store import DB_NAME, RunStore


def load_cli_config(config: str | None, overrides: list[str] | None, mirror_dir: Path | None) -> Config:
    """The config of ``--config`` (a file or shipped name), ``--set``/positional overrides and ``--mirror-dir``."""
    extra = list(overrides or [])
    if mirror_dir is not None:
        if not mirror_dir.is_dir():
            raise UserError(f"--mirror-dir {mirror_dir} is not a directory")
        extra.append(f"environment.mirror_dir={mirror_dir.resolve()}")
    return load_config(config, extra)


def ensure_run_dir(run_dir: Path) -> Path:
    """``run_dir``, created if needed; a file there or an unwritable parent is a :class:`UserError`.

    Checked before anything writes into it (the example's files, the store).
    """
    run_dir = Path(run_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} exists and is not a directory")
    if (run_dir / DB_NAME).exists():
        RunStore.open_read_only(run_dir).close()  # a damaged store is reported before anything is written
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run directory {run_dir}: {exc.strerror}") from exc
    if not os.access(run_dir, os.W_OK):
        raise UserError(
            f"run directory {run_dir} is read-only: status, costs, report and export still read it; "
            "copy it somewhere writable to continue the run"
        )
    return run_dir
