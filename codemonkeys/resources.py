"""Where the prompts, configs and image recipes shipped with the package live.

In a wheel they sit under ``codemonkeys/_data/``; in a source checkout (editable
install, tests) they sit at the repository's top level. Both are located from
this file, never from the working directory.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The directory of a shipped resource group: ``prompts``, ``configs`` or ``sandbox``."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"resource directory {name!r} is missing from this installation")


# Shipped YAML files that are tables the configs read, not run configs.
_TABLES = frozenset({"pricing", "context_windows"})


def shipped_configs() -> list[str]:
    """Names of the shipped run configs (``verified``, ``example``)."""
    return sorted(p.stem for p in resource_dir("configs").glob("*.yaml") if p.stem not in _TABLES)


def find_config(name_or_path: str | Path) -> Path:
    """A config given as a path, or as the name of a shipped config (``verified``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    shipped = resource_dir("configs")
    for candidate in (shipped / str(name_or_path), shipped / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"config {str(name_or_path)!r} not found (neither a file nor one of "
        f"{shipped_configs()})"
    )
