"""What to build for an instance, decided without Docker: pure planning and content keys.

An instance image sits on three shared layers: a builder (base image + C
toolchain), a Python layer per CPython version, and an environment layer per
repo version. Each layer's tag carries a hash of everything that goes into
it, so a changed spec, requirement file or recipe gets a new image, and 100
Django instances of one version share one environment.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .specs import EnvSpec

TESTBED = "/testbed"
# The environment's interpreter in every image: /opt/venv links to the Python prefix packages go into.
VENV_PYTHON = "/opt/venv/bin/python"
BUILD_CONSTRAINTS = "/opt/codemonkeys/build-constraints.txt"
# Build requirements each instance keeps (sandbox/env/wheelhouse.py), for grading's offline re-install.
WHEELHOUSE = "/opt/codemonkeys/wheelhouse"
# Heads of pre-install commands that change the system, not the repository: they go to the shared layer.
# When each CPython minor version came out. Packages older than the interpreter often do not run
# on it (2013's setuptools on 3.9) or lack what the spec's test command needs (pytest < 3 has no
# `pytest` script), so the cut-off date is never earlier than the release of the spec's Python.
PYTHON_RELEASES = {
    "2.7": "2010-07-03", "3.5": "2015-09-13", "3.6": "2016-12-23", "3.7": "2018-06-27", "3.8": "2019-10-14",
    "3.9": "2020-10-05", "3.10": "2021-10-04", "3.11": "2022-10-24", "3.12": "2023-10-02", "3.13": "2024-10-07",
}
_SYSTEM_COMMANDS = re.compile(r"^\s*(sudo\s+)?(DEBIAN_FRONTEND=\S+\s+)?(apt-get|apt|dpkg|locale-gen|update-locale)\b")
_SYSTEM_WRITES = re.compile(r"^\s*(echo|printf)\s.*>\s*/etc/")


def content_key(*parts: object) -> str:
    """A stable hash of JSON-able parts: the identity of an image's content."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def split_pre_install(commands: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(system, repo)``: package installs and /etc edits run once per environment, the rest per instance."""
    system: list[str] = []
    repo: list[str] = []
    for command in commands:
        (system if _SYSTEM_COMMANDS.match(command) or _SYSTEM_WRITES.match(command) else repo).append(command)
    return system, repo


def install_targets(install: str) -> list[str]:
    """What an install command installs from the repository, as paths in ``/testbed``.

    ``python -m pip install -e .[test]`` gives ``/testbed[test]``; a
    ``setup.py install``/``develop`` gives ``/testbed``; anything else, none.
    """
    try:
        words = shlex.split(install)
    except ValueError:
        return []
    if "setup.py" in words:
        return [TESTBED]
    if "install" not in words or "pip" not in " ".join(words[: words.index("install")]):
        return []
    targets: list[str] = []
    args = words[words.index("install") + 1 :]
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg in ("-e", "--editable"):
            continue
        if arg in ("-r", "-c", "--config-settings", "-C", "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--target", "--prefix"):
            skip_next = True
            continue
        if arg.startswith("-"):
            continue
        if arg == "." or arg.startswith(".["):
            targets.append(TESTBED + arg[1:])
    return targets


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """Package index settings copied from the host's pip configuration (http(s) only)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.index_url:
            env["PIP_INDEX_URL"] = env["UV_INDEX_URL"] = self.index_url
        if self.extra_index_urls:
            env["PIP_EXTRA_INDEX_URL"] = env["UV_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        return env


def parse_pip_config(text: str) -> IndexSettings:
    """Index settings from ``pip config list`` output; local ``file://`` indexes stay on the host."""
    index_url: str | None = None
    extras: list[str] = []
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        name = key.rsplit(".", 1)[-1].strip()
        value = raw.strip().strip("'\"")
        urls = [url for url in value.split() if url.startswith(("http://", "https://"))]
        if name == "index-url" and urls:
            index_url = urls[0]
        elif name == "extra-index-url":
            extras += [url for url in urls if url not in extras]
    return IndexSettings(index_url, tuple(extras))


@dataclass(frozen=True, slots=True)
class EnvPlan:
    """The environment layer of one repo version."""

    repo: str
    version: str
    python: str
    python_tag: str
    cutoff: str | None
    env_vars: dict[str, str]
    apt_packages: list[str]
    system_commands: list[str]
    system_files: dict[str, str]
    seed_pip: list[str]
    seed: list[str]
    build_constraints: list[str]
    requirements: list[str]
    pip_packages: list[str]
    installer_args: str
    key: str
    tag: str


@dataclass(frozen=True, slots=True)
class InstancePlan:
    """The instance layer: /testbed at the base commit, set up and installed."""

    instance_id: str
    env: EnvPlan
    base_commit: str
    repo_commands: list[str]
    deps_targets: list[str]
    install: str
    key: str
    tag: str
    labels: dict[str, str] = field(default_factory=dict)
    post_install: list[str] = field(default_factory=list)


def installer_args(cutoff: str | None, ladder: Sequence[int]) -> str:
    args = ["--python", VENV_PYTHON]
    if cutoff:
        args += ["--cutoff", cutoff, "--ladder-years", ",".join(str(y) for y in ladder)]
    return " ".join(shlex.quote(a) for a in args)


def plan_environment(
    *,
    repo: str,
    version: str,
    spec: EnvSpec,
    python: str,
    python_tag: str,
    requirements: Sequence[str],
    cutoff: datetime | None,
    index: IndexSettings,
    ladder: Sequence[int],
    editable_compat: bool,
    build_constraints: Sequence[str],
    recipe_digest: str,
    image_prefix: str,
) -> EnvPlan:
    """Plan the environment layer of ``repo`` at ``version``."""
    system, _ = split_pre_install(spec.setup_commands)
    env_vars = {
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_DEFAULT_TIMEOUT": "120",
        "UV_HTTP_TIMEOUT": "120",
        **index.env(),
        **({"PIP_CONFIG_SETTINGS": "editable_mode=compat"} if editable_compat else {}),
        **({"PIP_CONSTRAINT": BUILD_CONSTRAINTS, "UV_BUILD_CONSTRAINT": BUILD_CONSTRAINTS} if build_constraints else {}),
        **spec.env_vars,
    }
    cutoff_text = cutoff.strftime("%Y-%m-%d") if cutoff else None
    released = PYTHON_RELEASES.get(".".join(python.split(".")[:2]))
    if cutoff_text and released:
        cutoff_text = max(cutoff_text, released)
    args = installer_args(cutoff_text, ladder)
    # pip new enough for PEP 660 editable installs (an old pip with a new setuptools in its
    # isolated build breaks them); setuptools and wheel as of the date, for non-isolated builds.
    seed_pip = ["pip>=21.3"]
    seed = ["setuptools", "wheel"]
    key = content_key(
        "env", python_tag, repo, version, cutoff_text, env_vars, spec.apt_packages, system, spec.system_files,
        seed_pip, seed, list(build_constraints), list(requirements), spec.all_pip_packages, args, recipe_digest,
    )
    slug = re.sub(r"[^a-z0-9_.-]", "_", f"{repo.replace('/', '__')}-{version}".lower())
    return EnvPlan(
        repo=repo,
        version=version,
        python=python,
        python_tag=python_tag,
        cutoff=cutoff_text,
        env_vars=env_vars,
        apt_packages=list(spec.apt_packages),
        system_commands=system,
        system_files=dict(spec.system_files),
        seed_pip=seed_pip,
        seed=seed,
        build_constraints=list(build_constraints),
        requirements=list(requirements),
        pip_packages=spec.all_pip_packages,
        installer_args=args,
        key=key,
        tag=f"{image_prefix}/env.{slug}:{key[:16]}",
    )


def plan_instance(
    *, instance_id: str, base_commit: str, spec: EnvSpec, env: EnvPlan, recipe_digest: str, image_prefix: str
) -> InstancePlan:
    """Plan the instance layer on top of ``env``."""
    _, repo_commands = split_pre_install(spec.setup_commands)
    targets = install_targets(spec.install) if env.cutoff else []
    key = content_key(
        "instance", env.key, instance_id, base_commit, repo_commands, targets, spec.install, spec.post_install, recipe_digest
    )
    return InstancePlan(
        instance_id=instance_id,
        env=env,
        base_commit=base_commit,
        repo_commands=repo_commands,
        deps_targets=targets,
        install=spec.install,
        post_install=list(spec.post_install),
        key=key,
        tag=f"{image_prefix}/sweb.eval.x86_64.{instance_id.lower()}:{key[:16]}",
        labels={
            "codemonkeys.instance_id": instance_id,
            "codemonkeys.base_commit": base_commit,
            "codemonkeys.env_key": env.key,
            "codemonkeys.key": key,
        },
    )


def official_image(namespace: str, instance_id: str) -> str:
    """The name of the official prebuilt image of an instance (``__`` is spelled ``_1776_``)."""
    return f"{namespace}/sweb.eval.x86_64.{instance_id.lower().replace('__', '_1776_')}:latest"
