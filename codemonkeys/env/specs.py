"""Which environment an instance needs: the spec lookup.

Specs come from ``swebench``'s ``MAP_REPO_VERSION_TO_SPECS`` (pinned to 4.1.0,
the last release that ships them), under two layers of overrides: the shipped
``sandbox/env/spec_overrides.yaml`` (changes that let a spec build offline,
without conda) and the user's ``environment.spec_overrides`` config. An
override for a repo swebench does not know is a whole spec, which is how
tests and the bundled example instance bring their own repositories.

Override files map ``repo -> version -> fields``; the version ``"*"`` applies
to every version of the repo. Fields are merged over the swebench spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, DataError
from ..resources import resource_dir

WILDCARD = "*"
SpecOverrides = Mapping[str, Mapping[str, Mapping[str, Any]]]


class EnvSpec(BaseModel):
    """How to build and test one repo version. Field names follow swebench's specs.

    ``packages`` is what swebench hands to conda: ``requirements.txt``,
    ``environment.yml``, or a space-separated list of conda package specs;
    here all three become pip requirements. The fields after ``nano_cpus`` are
    ours: they replace swebench's per-repo maps so that a repo unknown to
    swebench can be described completely.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str
    test_cmd: str | list[str]
    install: str = ""
    packages: str = ""
    pip_packages: list[str] = []
    pre_install: list[str] = []
    eval_commands: list[str] = []
    no_use_env: bool = False
    execute_test_as_nonroot: bool = False
    nano_cpus: int | None = None
    requirements_paths: list[str] = []
    env_yml_paths: list[str] = []
    log_parser: str | None = None
    apt_packages: list[str] = []
    env_vars: dict[str, str] = Field(default_factory=dict)
    # Regexes: pre_install commands that match are dropped (downloads that cannot work offline).
    pre_install_exclude: list[str] = []
    # Commands run after the kept pre_install ones (offline stand-ins for what a dropped one fetched).
    pre_install_extra: list[str] = []
    # Files written into the environment layer (absolute path -> text), e.g. build options.
    system_files: dict[str, str] = Field(default_factory=dict)
    # pip packages installed after the spec's own ``pip_packages`` (ours: what an offline
    # resolution as of the date gets wrong, e.g. a release older than the spec's Python).
    pip_packages_extra: list[str] = []
    # Commands run in /testbed after ``install``, in the instance layer (matplotlib's FreeType swap).
    post_install: list[str] = []

    @property
    def setup_commands(self) -> list[str]:
        """``pre_install`` without the excluded commands, then ``pre_install_extra``."""
        patterns = [re.compile(p) for p in self.pre_install_exclude]
        return [c for c in self.pre_install if not any(p.search(c) for p in patterns)] + self.pre_install_extra

    @property
    def all_pip_packages(self) -> list[str]:
        """``pip_packages``, then ``pip_packages_extra``."""
        return [*self.pip_packages, *self.pip_packages_extra]

    @property
    def test_command(self) -> str:
        """The command the test directives are appended to (the last one if several)."""
        return self.test_cmd[-1] if isinstance(self.test_cmd, list) else self.test_cmd

    @property
    def test_setup(self) -> list[str]:
        """Commands that run before the test command (all but the last of a list)."""
        return list(self.test_cmd[:-1]) if isinstance(self.test_cmd, list) else []


def _swebench_maps() -> tuple[dict[str, Any], dict[str, list[str]], dict[str, list[str]]]:
    from swebench.harness.constants import (
        MAP_REPO_TO_ENV_YML_PATHS,
        MAP_REPO_TO_REQS_PATHS,
        MAP_REPO_VERSION_TO_SPECS,
    )

    return MAP_REPO_VERSION_TO_SPECS, MAP_REPO_TO_REQS_PATHS, MAP_REPO_TO_ENV_YML_PATHS


def read_overrides(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """An override file: ``repo -> version -> fields``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read spec overrides {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"spec overrides {path} are not valid YAML: {exc}") from exc
    _check_shape(data, str(path))
    return {str(repo): {str(v): dict(f) for v, f in versions.items()} for repo, versions in data.items()}


def _check_shape(data: Any, label: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"spec overrides in {label} must map repo -> version -> fields")
    for repo, versions in data.items():
        if not isinstance(versions, Mapping) or not all(isinstance(f, Mapping) for f in versions.values()):
            raise ConfigError(f"spec overrides for {repo!r} in {label} must map version -> fields")


def shipped_overrides() -> dict[str, dict[str, dict[str, Any]]]:
    """The overrides shipped in ``sandbox/env/spec_overrides.yaml``."""
    path = resource_dir("sandbox") / "env" / "spec_overrides.yaml"
    return read_overrides(path) if path.is_file() else {}


class SpecRegistry:
    """Looks specs up: override layers first, swebench's map underneath."""

    def __init__(self, layers: Sequence[SpecOverrides] = (), *, use_swebench: bool = True) -> None:
        for index, layer in enumerate(layers):
            _check_shape(layer, f"override layer {index + 1}")
        self._layers = list(layers)
        self._use_swebench = use_swebench

    @classmethod
    def default(cls, user_overrides: SpecOverrides | None = None, files: Sequence[Path] = ()) -> SpecRegistry:
        """swebench, then the shipped overrides, then override files, then config overrides."""
        layers: list[SpecOverrides] = [shipped_overrides()]
        layers += [read_overrides(path) for path in files]
        if user_overrides:
            layers.append(user_overrides)
        return cls(layers)

    def raw(self, repo: str, version: str) -> dict[str, Any]:
        """The merged spec fields for ``repo`` at ``version`` (before validation)."""
        specs_map, reqs_paths, yml_paths = _swebench_maps() if self._use_swebench else ({}, {}, {})
        fields: dict[str, Any] = {}
        known = False
        if repo in specs_map and version in specs_map[repo]:
            fields.update(specs_map[repo][version])
            fields.setdefault("requirements_paths", list(reqs_paths.get(repo, [])))
            fields.setdefault("env_yml_paths", list(yml_paths.get(repo, [])))
            known = True
        for layer in self._layers:
            versions = layer.get(repo, {})
            for key in (WILDCARD, version):
                if key in versions:
                    if key == version:
                        known = True
                    fields.update(versions[key])
        if not known:
            raise DataError(f"no environment spec for {repo} version {version!r} (not in swebench's specs nor in the overrides)")
        return fields

    def get(self, repo: str, version: str) -> EnvSpec:
        """The validated spec for ``repo`` at ``version``; :class:`DataError` when there is none."""
        fields = self.raw(repo, version)
        try:
            return EnvSpec.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise DataError(f"environment spec of {repo} {version} is invalid: {problems}") from None


_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(text.strip())
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def choose_python(requested: str, available: Sequence[str]) -> str:
    """The installed CPython that serves a spec's ``python``.

    The newest patch release of the requested minor version; when that minor
    version is missing, the nearest newer minor of the same major (Django 1.11
    asks for 3.5, which is not built here; 3.6 runs it).
    """
    wanted = _parse_version(requested)
    if wanted is None:
        raise DataError(f"python version {requested!r} is not of the form X.Y")
    parsed = sorted((v, name) for name in available if (v := _parse_version(name)) is not None)
    same_minor = [name for v, name in parsed if v[:2] == wanted[:2] and (len(requested.split(".")) < 3 or v == wanted)]
    if same_minor:
        return same_minor[-1]
    newer = [name for v, name in parsed if v[0] == wanted[0] and v[1] > wanted[1]]
    if newer:
        first_minor = _parse_version(newer[0])[:2]  # type: ignore[index]
        return [name for name in newer if _parse_version(name)[:2] == first_minor][-1]  # type: ignore[index]
    raise DataError(f"no Python {requested} or newer {wanted[0]}.x among the available versions: {', '.join(available) or 'none'}")
