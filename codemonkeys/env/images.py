"""Environment images: pulled when a registry answers, else built here in layers.

No Docker Hub and no conda: the base image comes from debootstrap (see
:mod:`codemonkeys.sandbox.baseimage`), CPython from the host's pyenv builds,
packages from PyPI through ``uv`` with the environment commit's date as
cut-off. Layers (builder, python, env, instance; see :mod:`.plan`) are tagged
by content keys and reused. Every build's log is kept under
``<cache>/build-logs``; a failure raises :class:`BuildError` naming the log.
This is the only env module that touches Docker; grading runs in sandboxes
through the :class:`~codemonkeys.sandbox.base.SandboxFactory` protocol.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from ..config import EnvironmentConfig
from ..errors import BuildError, RepoError
from ..resources import resource_dir
from ..sandbox.base import EnvironmentRef
from ..swebench.instances import Instance
from ..swebench.repo import RepoSource, commit_date, materialize, read_file_at
from .official import ACTIVATE, END, TESTBED_ENV, activation_delta, capture_script, split_capture
from .plan import (
    VENV_PYTHON,
    WHEELHOUSE,
    EnvPlan,
    IndexSettings,
    InstancePlan,
    content_key,
    official_image,
    parse_pip_config,
    plan_environment,
    plan_instance,
)
from .requirements import CondaMap, env_requirements, with_system_libraries
from .specs import SpecRegistry, choose_python

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
_PYTHON_SKIP = {"idlelib", "tkinter", "turtledemo", "__phello__"}
# How dockerd words a missing image in a pull's error stream.
_NOT_FOUND = re.compile(r"manifest unknown|manifest for .* not found|not found: manifest|repository .* not found|does not exist", re.I)


def _recipe_dir() -> Path:
    return resource_dir("sandbox") / "env"


def recipe_digest(*names: str) -> str:
    """A hash of the named recipe files: changing a template rebuilds only the layers built from it."""
    folder = _recipe_dir()
    return content_key(*[(name, (folder / name).read_text(encoding="utf-8")) for name in names])


_BUILDER_FILES = ("builder.Dockerfile.j2",)
_PYTHON_FILES = ("python.Dockerfile.j2",)
_ENV_FILES = ("env.Dockerfile.j2", "install_requirements.py", "system_setup.sh.j2")
# Scripts copied into /opt/codemonkeys of every instance: the wheelhouse step every install
# ends with, and what a spec's ``post_install`` may run.
INSTANCE_HELPERS = ("matplotlib_freetype.py", "wheelhouse.py")
_INSTANCE_FILES = ("instance.Dockerfile.j2", "setup_repo.sh.j2", *INSTANCE_HELPERS)


def host_index_settings() -> IndexSettings:
    """The host's pip index settings, so images use the same package mirror (read at build time)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    return parse_pip_config(proc.stdout) if proc.returncode == 0 else IndexSettings()


def available_pythons(pyenv_root: Path) -> dict[str, Path]:
    """Installed CPythons by version (``3.9.18`` -> its prefix)."""
    versions = pyenv_root / "versions"
    if not versions.is_dir():
        return {}
    return {p.name: p for p in sorted(versions.iterdir()) if (p / "bin").is_dir() and re.fullmatch(r"\d+\.\d+\.\d+", p.name)}


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """An instance image ready to start sandboxes from."""

    instance_id: str
    ref: EnvironmentRef
    source: str  # "pulled", "cached" or "built"
    build_s: float
    env_tag: str | None = None


def _python_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if any(part in _PYTHON_SKIP for part in parts):
        return None
    # site-packages of the host interpreter stays behind: environments install their own.
    if "site-packages" in parts and parts[-1] != "site-packages":
        return None
    return info


class ImageBuilder:
    """Gets the image of an instance: official pull, cache hit, or a layered local build.

    Blocking; call from a thread in async code. One builder per process is
    enough: it remembers which layers it has checked and whether the registry
    answered.
    """

    def __init__(
        self,
        config: EnvironmentConfig,
        *,
        registry: SpecRegistry | None = None,
        source: RepoSource | None = None,
        client: docker.DockerClient | None = None,
        progress: Progress | None = None,
        index: IndexSettings | None = None,
    ) -> None:
        self.config = config
        self.cache_dir = (config.cache_dir or Path.home() / ".cache" / "codemonkeys").expanduser()
        self.logs_dir = self.cache_dir / "build-logs"
        self.registry = registry or SpecRegistry.default(config.spec_overrides, config.spec_files)
        self.source = source or RepoSource(mirror_dir=config.mirror_dir, cache_dir=self.cache_dir / "repos")
        self._client = client
        self._progress = progress or (lambda message: log.info("%s", message))
        self._index = index
        self._registry_down = not config.pull_official
        self._pull_failure = ""
        self._activation: dict[str, tuple[tuple[str, str], ...]] = {}
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_recipe_dir())),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )

    # --- docker plumbing ----------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            import docker as docker_sdk

            try:
                self._client = docker_sdk.from_env(timeout=600)
            except docker_sdk.errors.DockerException as exc:
                raise BuildError(f"no Docker daemon to build images with: {exc}") from exc
        return self._client

    def exists(self, tag: str) -> bool:
        import docker as docker_sdk

        try:
            self.client.images.get(tag)
        except docker_sdk.errors.ImageNotFound:
            return False
        return True

    def _build(self, tag: str, files: Mapping[str, bytes | Path], what: str, labels: Mapping[str, str] | None = None) -> None:
        """Build ``tag`` from a context of files (bytes, or host paths copied recursively); log to a file."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", tag) + ".log")
        started = time.monotonic()
        with tempfile.TemporaryFile() as context, open(log_path, "w", encoding="utf-8") as log_file:
            with tarfile.open(fileobj=context, mode="w") as tar:
                for name, content in files.items():
                    if isinstance(content, Path):
                        tar.add(str(content), arcname=name, filter=_python_filter if name == "python" else None)
                    else:
                        info = tarfile.TarInfo(name)
                        info.size = len(content)
                        info.mode = 0o755 if name.endswith((".sh", ".py")) or name == "uv" else 0o644
                        tar.addfile(info, io.BytesIO(content))
            context.seek(0)
            error: str | None = None
            try:
                stream = self.client.api.build(
                    fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True,
                    labels=dict(labels or {}), timeout=int(self.config.build_timeout_s),
                )
                for chunk in stream:
                    if "stream" in chunk:
                        log_file.write(chunk["stream"])
                    if "error" in chunk:
                        error = str(chunk["error"])
                        log_file.write(f"ERROR: {error}\n")
                    log_file.flush()
            except Exception as exc:  # the SDK raises APIError, ReadTimeout, ConnectionError...
                error = f"{type(exc).__name__}: {exc}"
                log_file.write(f"ERROR: {error}\n")
        if error is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise BuildError(f"building {what} ({tag}) failed: {error}\nlog: {log_path}\n...{tail}")
        self._progress(f"built {what} in {time.monotonic() - started:.0f} s ({tag})")

    # --- layers -------------------------------------------------------------

    def builder_tag(self) -> str:
        from ..sandbox.baseimage import ensure_base_image

        base = ensure_base_image(self.client)
        key = content_key("builder", base, self.config.builder_apt_packages, recipe_digest(*_BUILDER_FILES), _uv_digest())
        tag = f"{self.config.image_prefix}/builder:{key[:16]}"
        if not self.exists(tag):
            self._progress(f"building the builder layer on {base}")
            dockerfile = self._render("builder.Dockerfile.j2", base=base, apt_packages=self.config.builder_apt_packages)
            self._build(tag, {"Dockerfile": dockerfile, "uv": Path(_uv_binary())}, "builder layer")
        return tag

    def python_tag(self, version: str) -> str:
        pythons = available_pythons(self._pyenv_root())
        prefix = pythons[version]
        builder = self.builder_tag()
        key = content_key("python", builder, version, str(prefix), recipe_digest(*_PYTHON_FILES))
        tag = f"{self.config.image_prefix}/python:{version}-{key[:12]}"
        if not self.exists(tag):
            self._progress(f"building the Python {version} layer")
            major = version.split(".")[0]
            dockerfile = self._render("python.Dockerfile.j2", builder=builder, prefix=str(prefix), major=major)
            self._build(tag, {"Dockerfile": dockerfile, "python": prefix}, f"Python {version} layer")
        return tag

    def _pyenv_root(self) -> Path:
        return (self.config.pyenv_root or Path.home() / ".pyenv").expanduser()

    def plan(self, instance: Instance) -> InstancePlan:
        """Decide every layer of ``instance`` (reads the repo, builds the shared layers it needs)."""
        spec = self.registry.get(instance.repo, instance.version)
        git_dir = self.source.ensure_commit(instance.repo, instance.environment_setup_commit)
        python = choose_python(spec.python, list(available_pythons(self._pyenv_root())))
        conda_map = CondaMap.shipped()
        read = lambda path: read_file_at(git_dir, instance.environment_setup_commit, path)  # noqa: E731
        requirements = env_requirements(spec, read, conda_map)
        spec = with_system_libraries(spec, read, conda_map)  # the C libraries conda would have installed
        cutoff = commit_date(git_dir, instance.environment_setup_commit) if self.config.exclude_newer else None
        index = self._index if self._index is not None else host_index_settings()
        self._index = index
        env = plan_environment(
            repo=instance.repo, version=instance.version, spec=spec, python=python,
            python_tag=self.python_tag(python), requirements=requirements, cutoff=cutoff, index=index,
            ladder=self.config.cutoff_ladder_years, editable_compat=self.config.editable_mode_compat,
            build_constraints=self.config.build_constraints,
            recipe_digest=recipe_digest(*_ENV_FILES), image_prefix=self.config.image_prefix,
        )
        return plan_instance(
            instance_id=instance.instance_id, base_commit=instance.base_commit, spec=spec, env=env,
            recipe_digest=recipe_digest(*_INSTANCE_FILES), image_prefix=self.config.image_prefix,
        )

    def ensure_env(self, plan: EnvPlan) -> str:
        if self.exists(plan.tag):
            return plan.tag
        self._progress(f"building the environment of {plan.repo} {plan.version} (Python {plan.python}, packages as of {plan.cutoff or 'today'})")
        files: dict[str, bytes | Path] = {
            "Dockerfile": self._render(
                "env.Dockerfile.j2", python_image=plan.python_tag, env=plan.env_vars, apt_packages=plan.apt_packages,
                system_commands=plan.system_commands, installer_args=plan.installer_args,
                system_files={f"files/{n}": path for n, path in enumerate(plan.system_files)},
            ),
            "install_requirements.py": (_recipe_dir() / "install_requirements.py").read_bytes(),
            "seed_pip.txt": _lines(plan.seed_pip),
            "seed.txt": _lines(plan.seed),
            "build-constraints.txt": _lines(plan.build_constraints),
            "requirements.txt": _lines(plan.requirements),
            "pip_packages.txt": _lines(plan.pip_packages),
        }
        for n, text in enumerate(plan.system_files.values()):
            files[f"files/{n}"] = text.encode()
        if plan.system_commands:
            files["system_setup.sh"] = self._render("system_setup.sh.j2", commands=plan.system_commands)
        self._build(plan.tag, files, f"environment {plan.repo} {plan.version}", {"codemonkeys.key": plan.key})
        return plan.tag

    def ensure_instance(self, instance: Instance) -> BuiltImage:
        """The instance's image, pulled, found or built; :class:`BuildError` when none can be had.

        A registry that has no image of the instance (404) is asked again for
        the next one; one that does not answer within ``pull_timeout_s`` is
        not asked again by this builder, so a dead registry costs one timeout
        per run, not one per instance. Either way the image is built here.
        """
        started = time.monotonic()
        pull_note = ""
        if not self._registry_down:
            image = official_image(self.config.official_namespace, instance.instance_id)
            pulled = self._pull(image)
            if pulled is not None:
                ref = EnvironmentRef(
                    key=f"official:{pulled}", image=pulled, python="python", exec_env=self.activation_env(pulled)
                )
                return BuiltImage(instance.instance_id, ref, "pulled", time.monotonic() - started)
            pull_note = f" (after pulling {image}: {self._pull_failure})"
        try:
            return self._local(instance, started)
        except BuildError as exc:
            if pull_note:
                raise BuildError(f"{exc}{pull_note}") from exc
            raise

    def _local(self, instance: Instance, started: float) -> BuiltImage:
        try:
            plan = self.plan(instance)
        except RepoError as exc:
            raise BuildError(f"{instance.instance_id}: {exc}") from exc
        ref = EnvironmentRef(key=plan.key, image=plan.tag, python=VENV_PYTHON)
        if self.exists(plan.tag):
            return BuiltImage(instance.instance_id, ref, "cached", time.monotonic() - started, plan.env.tag)
        env_tag = self.ensure_env(plan.env)
        self._progress(f"building {instance.instance_id}")
        with tempfile.TemporaryDirectory(prefix="codemonkeys-testbed-") as tmp:
            testbed = Path(tmp) / "testbed"
            try:
                materialize(self.source.ensure_commit(instance.repo, instance.base_commit), instance.base_commit, testbed)
            except RepoError as exc:
                raise BuildError(f"{instance.instance_id}: {exc}") from exc
            files: dict[str, bytes | Path] = {
                "Dockerfile": self._render("instance.Dockerfile.j2", env_image=env_tag, helpers=INSTANCE_HELPERS),
                "setup_repo.sh": self._render(
                    "setup_repo.sh.j2", pre_install=plan.repo_commands, deps_targets=plan.deps_targets,
                    install=plan.install, post_install=plan.post_install, installer_args=plan.env.installer_args,
                    wheelhouse=WHEELHOUSE,
                ),
                "testbed": testbed,
                **{name: _recipe_dir() / name for name in INSTANCE_HELPERS},
            }
            self._build(plan.tag, files, instance.instance_id, plan.labels)
        return BuiltImage(instance.instance_id, ref, "built", time.monotonic() - started, env_tag)

    def _pull(self, image: str) -> str | None:
        """Pull an official image; ``None`` when the registry lacks it or does not answer in time.

        The wait is bounded by ``pull_timeout_s`` in total: docker-py streams
        a pull without any timeout, so it runs in a thread on a client of its
        own, which is closed at the deadline (dockerd then cancels the pull).
        """
        import docker as docker_sdk

        if self.exists(image):
            return image
        repository, _, tag = image.rpartition(":")
        timeout = self.config.pull_timeout_s
        client = docker_sdk.from_env(timeout=max(1, int(timeout)))
        outcome: dict[str, BaseException | str] = {}

        def pull() -> None:
            try:
                for chunk in client.api.pull(repository, tag=tag, stream=True, decode=True):
                    if isinstance(chunk, dict) and chunk.get("error"):
                        outcome["error"] = str(chunk["error"])
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome["exception"] = exc

        worker = threading.Thread(target=pull, name=f"pull-{tag}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            client.close()
            worker.join(5)
            self._registry_unreachable(image, TimeoutError(f"no image after {timeout:.0f} s"))
            return None
        client.close()
        failure = outcome.get("exception") or outcome.get("error")
        if failure is not None:
            text = str(getattr(failure, "explanation", None) or failure)
            if isinstance(failure, docker_sdk.errors.NotFound) or _NOT_FOUND.search(text):
                # dockerd reports a registry's 404 as its own 404 or as a 500 naming the manifest.
                self._pull_failure = f"not in the registry: {text[:200]}"
                return None
            self._registry_unreachable(image, failure if isinstance(failure, BaseException) else BuildError(text))
            return None
        if not self.exists(image):
            self._pull_failure = "the pull ended without the image"
            return None
        return image

    def _registry_unreachable(self, image: str, exc: BaseException) -> None:
        self._pull_failure = f"registry unreachable ({type(exc).__name__}: {str(exc)[:200]}); not asked again this run"
        log.info("%s: %s; building images locally from now on", image, self._pull_failure)
        self._registry_down = True

    def activation_env(self, image: str) -> tuple[tuple[str, str], ...]:
        """The variables ``conda activate testbed`` sets in ``image`` (empty without Miniconda).

        Captured once per image in a throwaway container without network, so
        every later command runs in the repository's environment, activate.d
        scripts included, as the harness's eval script does.
        """
        import docker as docker_sdk

        if image in self._activation:
            return self._activation[image]
        output, exit_code = "", 0
        for _ in range(3):  # the log of a container that exits at once can come back short
            try:
                raw = self.client.containers.run(
                    image, ["bash", "-c", capture_script()], remove=True, network_disabled=True, stdout=True, stderr=False
                )
                output, exit_code = raw.decode("utf-8", errors="replace"), 0
            except docker_sdk.errors.ContainerError as exc:
                output, exit_code = "", exc.exit_status
            if exit_code != 0 or END in output:
                break
        if exit_code == 3:  # no /opt/miniconda3: not the official layout, nothing to activate
            delta: dict[str, str] = {}
        elif exit_code != 0:
            raise BuildError(f"{image}: `{ACTIVATE}` fails in the image (exit {exit_code})")
        else:
            before, after = split_capture(output)
            delta = activation_delta(before, after)
            if not delta.get("PATH", "").startswith(f"{TESTBED_ENV}/bin"):
                raise BuildError(f"{image}: activating the testbed env did not put {TESTBED_ENV}/bin first on PATH")
        self._activation[image] = tuple(sorted(delta.items()))
        return self._activation[image]

    def _render(self, template: str, **values: Any) -> bytes:
        return self._templates.get_template(template).render(**values).encode()


def _lines(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _uv_binary() -> str:
    try:
        import uv
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise BuildError("the 'uv' package is needed to build environment images") from exc
    return uv.find_uv_bin()


def _uv_digest() -> str:
    path = Path(_uv_binary())
    stat = path.stat()
    return f"{stat.st_size}-{int(stat.st_mtime)}"
