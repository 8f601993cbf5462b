"""What an environment installs, as pip requirements (no conda on these machines).

swebench's ``packages`` field is handed to conda in the official harness: a
requirements file path, an ``environment.yml``, or conda package specs. Here
all three become pip requirement lines. Files are read from the repository
at the environment commit (never from raw GitHub URLs), and conda names are
mapped to PyPI names with the table in ``sandbox/env/conda_to_pip.yaml``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import DataError, RepoError
from ..resources import resource_dir
from .specs import EnvSpec

# swebench drops these lines from requirement files: the project itself is installed by ``install``.
_EXCLUDED_PREFIXES = ("-e .", "#", ".[test")
_CONDA_SPEC = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9_][A-Za-z0-9._-]*)\s*(.*)$")


@dataclass(frozen=True, slots=True)
class CondaMap:
    """How conda package names become PyPI names; ``skip`` lists conda-only packages."""

    renames: dict[str, str] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    # conda name -> Debian packages giving its C library (conda_to_debian.yaml).
    debian: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def shipped(cls) -> CondaMap:
        folder = resource_dir("sandbox") / "env"
        data: dict[str, Any] = yaml.safe_load((folder / "conda_to_pip.yaml").read_text(encoding="utf-8")) or {}
        debian: dict[str, Any] = yaml.safe_load((folder / "conda_to_debian.yaml").read_text(encoding="utf-8")) or {}
        return cls(
            renames={str(k).lower(): str(v) for k, v in (data.get("renames") or {}).items()},
            skip=frozenset(str(name).lower() for name in data.get("skip") or []),
            debian={str(k).lower(): tuple(str(p) for p in v) for k, v in debian.items()},
        )


def conda_to_pip(spec: str, conda_map: CondaMap) -> str | None:
    """One conda package spec as a pip requirement, or ``None`` for conda-only packages.

    ``numpy=1.2`` means 1.2.* in conda; ``name=1.2=build`` drops the build string.
    """
    text = spec.split("#", 1)[0].strip()
    if not text:
        return None
    match = _CONDA_SPEC.match(text)
    if not match:
        raise DataError(f"cannot read conda package spec {spec!r}")
    name, constraint = match.group(1), match.group(2).replace(" ", "")
    lowered = name.lower()
    if lowered in conda_map.skip:
        return None
    name = conda_map.renames.get(lowered, name)
    if constraint.startswith("=") and not constraint.startswith("=="):
        version = constraint[1:].split("=", 1)[0]
        constraint = f"=={version}" if version.endswith("*") else f"=={version}.*"
    elif constraint and constraint[0].isdigit():  # "numpy 1.2" (space-separated form)
        constraint = f"=={constraint.split('=', 1)[0]}.*"
    return f"{name}{constraint}"


def from_environment_yml(text: str, conda_map: CondaMap) -> list[str]:
    """Pip requirements from a conda ``environment.yml``: conda dependencies mapped, pip section kept."""
    from swebench.harness.test_spec.python import clean_environment_yml

    try:
        data = yaml.safe_load(clean_environment_yml(text)) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"environment.yml is not valid YAML: {exc}") from None
    lines: list[str] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, str):
            converted = conda_to_pip(dep, conda_map)
            if converted:
                lines.append(converted)
        elif isinstance(dep, dict):
            lines += [str(item) for item in dep.get("pip") or []]
    return lines


def from_requirements_file(path: str, read: Callable[[str], str], *, _depth: int = 0) -> list[str]:
    """Lines of a requirements file, ``-r`` includes followed (relative to the file), as swebench does."""
    from swebench.harness.test_spec.python import clean_requirements

    if _depth > 5:
        raise DataError(f"requirements include chain too deep at {path}")
    lines: list[str] = []
    for raw in clean_requirements(read(path)).splitlines():
        line = raw.strip()
        if not line or line.startswith(_EXCLUDED_PREFIXES):
            continue
        if line.startswith(("-r ", "--requirement")):
            included = line.split(None, 1)[1].strip() if " " in line else line.split("=", 1)[1]
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), included))
            lines += from_requirements_file(target, read, _depth=_depth + 1)
            continue
        if line.startswith(("-c ", "--constraint", "-i ", "--index-url", "--extra-index-url", "-f ", "--find-links")):
            continue  # indexes come from the host configuration, constraint files are not copied
        lines.append(line.split(" #", 1)[0].strip())
    return lines


def conda_names(spec: EnvSpec, read: Callable[[str], str]) -> list[str]:
    """The conda package names a spec's ``packages`` asks for (environment.yml or a conda list)."""
    from swebench.harness.test_spec.python import clean_environment_yml

    packages = spec.packages.strip()
    items: list[str] = []
    if packages == "environment.yml":
        for path in spec.env_yml_paths:
            try:
                data = yaml.safe_load(clean_environment_yml(read(path))) or {}
            except (RepoError, yaml.YAMLError):
                continue
            items = [dep for dep in data.get("dependencies") or [] if isinstance(dep, str)]
            break
    elif packages and packages != "requirements.txt":
        items = packages.split()
    names = []
    for item in items:
        match = _CONDA_SPEC.match(item.split("#", 1)[0].strip())
        if match:
            names.append(match.group(1).lower())
    return names


def debian_packages(spec: EnvSpec, read: Callable[[str], str], conda_map: CondaMap) -> list[str]:
    """Debian packages standing in for the conda-only C libraries the spec's conda packages bring."""
    found: dict[str, None] = {}
    for name in conda_names(spec, read):
        for package in conda_map.debian.get(name, ()):
            found[package] = None
    return list(found)


def with_system_libraries(spec: EnvSpec, read: Callable[[str], str], conda_map: CondaMap) -> EnvSpec:
    """``spec`` with the Debian packages of its conda-only C libraries added to ``apt_packages``."""
    system = [p for p in debian_packages(spec, read, conda_map) if p not in spec.apt_packages]
    return spec.model_copy(update={"apt_packages": [*spec.apt_packages, *system]}) if system else spec


def env_requirements(spec: EnvSpec, read: Callable[[str], str], conda_map: CondaMap) -> list[str]:
    """The pip requirements for a spec's ``packages`` field.

    ``read(path)`` returns a file of the repository at the environment commit
    and raises :class:`RepoError` when it is absent.
    """
    packages = spec.packages.strip()
    if not packages:
        return []
    if packages == "requirements.txt":
        return _first_present(spec.requirements_paths, read, lambda path: from_requirements_file(path, read), "requirements")
    if packages == "environment.yml":
        return _first_present(spec.env_yml_paths, read, lambda path: from_environment_yml(read(path), conda_map), "environment.yml")
    lines = []
    for item in packages.split():
        converted = conda_to_pip(item, conda_map)
        if converted:
            lines.append(converted)
    return lines


def _first_present(paths: list[str], read: Callable[[str], str], parse: Callable[[str], list[str]], what: str) -> list[str]:
    if not paths:
        raise DataError(f"the spec installs from {what} but names no path for it")
    for path in paths:
        try:
            return parse(path)
        except RepoError:
            continue
    raise RepoError(f"none of {', '.join(paths)} exists at the environment commit")
