"""Environments for the bubblewrap backend: a Python and a testbed per instance, built in bwrap.

The same recipe as the Docker images (:mod:`.images`), without Docker: the
plan comes from :func:`~.plan.plan_environment`/:func:`~.plan.plan_instance`,
CPython from the host's pyenv builds, packages through the same
``install_requirements.py`` (uv, the environment commit's date as cut-off),
the repository through the same ``setup_repo.sh`` (pre-install, install,
setup commit). Steps run in ``bwrap`` with the network, the Python writable
at the path it keeps and the testbed at ``/testbed``, so an editable install
points at ``/testbed``, where each sandbox binds its private copy.

As in the images, packages go into the interpreter's own prefix, not a venv
(``tox --current-env`` symlinks the interpreter, and a symlinked venv python
forgets its venv): each environment has a private copy of the pyenv CPython,
its ``libpython`` found through ``$ORIGIN`` (``patchelf``), so a sandbox
needs nothing from the host's pyenv.

Cache layout under ``<cache_dir>/local-envs``::

    layers/<env key>/   python/ with the repo version's dependencies, codemonkeys/ (recipe
                        files, failed-requirements.txt), system-files/, env.json
    <instance key>/     python/ (the layer's, with the project installed), testbed/ (the repo
                        at the base commit, history up to it, setup commit on top),
                        codemonkeys/, local-env.json

Instances of one repo version share the dependency layer, as Docker images
share the env image: it is built once, then cloned into each instance in a
second or two where a rebuild takes minutes and would resolve packages anew.
A clone hard-links the standard library, headers and ``libpython`` and
copies ``bin/`` and ``site-packages`` (what instance builds write to), whose
recorded paths are then rewritten (:func:`.localbuild.relocate`). So an
instance costs the disk of its packages, not of a whole Python.
Each entry is built in a staging directory and renamed into place with a
``.complete`` marker; logs go to ``<cache_dir>/build-logs/local.*.log``.

What differs from Docker: Debian packages cannot be installed on the host,
so ``apt_packages``, ``apt-get install`` pre-install steps and the Debian
packages of conda-only C libraries (``conda_to_debian.yaml``) are checked
against the host (missing ones are logged and recorded in
``local-env.json``; the build fails later if it really needs them); other
system commands (``locale-gen``...) are skipped. The spec's system files are
present during builds only, and its ``env_vars`` only where grading's eval
script exports them, since sandboxes do not carry image environment variables.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import jinja2

from ..config import EnvironmentConfig
from ..errors import BuildError, RepoError
from ..sandbox.base import TESTBED, EnvironmentRef
from ..sandbox.bwrap_backend import BASE_PATH, SYSTEM_DIRS, bwrap_available
from ..swebench.instances import Instance
from ..swebench.repo import RepoSource, commit_date, materialize, read_file_at, repo_slug
from .images import INSTANCE_HELPERS, BuiltImage, available_pythons, host_index_settings, recipe_digest
from .localbuild import (
    BuildLog,
    apt_install_packages,
    box_command,
    clone_python,
    copy_python,
    is_complete,
    key_lock,
    missing_debian_packages,
    portable_python,
    relocate,
    run_logged,
    staging,
)
from .plan import WHEELHOUSE, EnvPlan, IndexSettings, InstancePlan, content_key, plan_environment, plan_instance
from .requirements import CondaMap, env_requirements, with_system_libraries
from .specs import SpecRegistry, choose_python

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
# Bump when the build steps in this module change: every local environment is then rebuilt.
LOCAL_RECIPE = "local-2"
SCRATCH = "/opt/codemonkeys"  # where the Docker recipe keeps its files (PIP_CONSTRAINT, FAILED_LOG)
UV_DIR = "/opt/uv"
_PYTHON_CHECK = "import ssl, ctypes, bz2, lzma, sqlite3, zlib, ensurepip"
# The env layer's install steps, as env.Dockerfile.j2 runs them: (requirements file, extra arguments).
_INSTALL_STEPS: tuple[tuple[str, list[str]], ...] = (
    ("seed_pip.txt", []),
    ("seed.txt", ["--reinstall"]),
    ("requirements.txt", []),
    ("pip_packages.txt", []),
)


def _recipe_file(name: str) -> Path:
    from ..resources import resource_dir

    return resource_dir("sandbox") / "env" / name


def with_python(installer_args: str, python: str) -> list[str]:
    """The plan's ``install_requirements.py`` arguments with ``--python`` pointing at a local Python."""
    args = shlex.split(installer_args)
    if "--python" not in args:
        return ["--python", python, *args]
    index = args.index("--python")
    return [*args[: index + 1], python, *args[index + 2 :]]


def _pyenv_root(config: EnvironmentConfig) -> Path:
    if config.pyenv_root is not None:
        return config.pyenv_root.expanduser()
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        proc = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip())
    return Path.home() / ".pyenv"


def _uv_binary() -> Path:
    try:
        import uv
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise BuildError("the 'uv' package is needed to build environments") from exc
    return Path(uv.find_uv_bin()).resolve()


def _lines(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


class LocalEnvBuilder:
    """Gets the local environment of an instance: cache hit, or a build in bwrap.

    Blocking; call from a thread in async code. Safe to share between
    threads and processes: builds of one key are serialized by a file lock.
    """

    def __init__(
        self,
        config: EnvironmentConfig,
        *,
        registry: SpecRegistry | None = None,
        source: RepoSource | None = None,
        progress: Progress | None = None,
        index: IndexSettings | None = None,
        bwrap: str | None = None,
    ) -> None:
        self.config = config
        # Resolved: installed scripts record this path, and sandboxes bind the resolved root.
        self.cache_dir = (config.cache_dir or Path.home() / ".cache" / "codemonkeys").expanduser().resolve()
        self.envs_dir = self.cache_dir / "local-envs"
        self.logs_dir = self.cache_dir / "build-logs"
        self.registry = registry or SpecRegistry.default(config.spec_overrides, config.spec_files)
        self.source = source or RepoSource(mirror_dir=config.mirror_dir, cache_dir=self.cache_dir / "repos")
        self._progress = progress or (lambda message: log.info("%s", message))
        self._index = index
        self._bwrap = bwrap
        self._pyenv: Path | None = None
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_recipe_file("setup_repo.sh.j2").parent)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )

    # --- planning -----------------------------------------------------------

    def pyenv_root(self) -> Path:
        if self._pyenv is None:
            self._pyenv = _pyenv_root(self.config)
        return self._pyenv

    def plan(self, instance: Instance) -> InstancePlan:
        """The Docker recipe's plan of ``instance``, keyed for local builds (reads the repo, builds nothing)."""
        spec = self.registry.get(instance.repo, instance.version)
        git_dir = self.source.ensure_commit(instance.repo, instance.environment_setup_commit)
        pythons = available_pythons(self.pyenv_root())
        python = choose_python(spec.python, list(pythons))
        read = lambda path: read_file_at(git_dir, instance.environment_setup_commit, path)  # noqa: E731
        conda_map = CondaMap.shipped()
        requirements = env_requirements(spec, read, conda_map)
        # The C libraries conda would have installed: checked on the host like apt_packages.
        spec = with_system_libraries(spec, read, conda_map)
        cutoff = commit_date(git_dir, instance.environment_setup_commit) if self.config.exclude_newer else None
        if self._index is None:
            self._index = host_index_settings()
        env = plan_environment(
            repo=instance.repo, version=instance.version, spec=spec, python=python,
            python_tag=f"pyenv:{python}:{pythons[python]}", requirements=requirements, cutoff=cutoff,
            index=self._index, ladder=self.config.cutoff_ladder_years,
            editable_compat=self.config.editable_mode_compat, build_constraints=self.config.build_constraints,
            recipe_digest=content_key(LOCAL_RECIPE, recipe_digest("install_requirements.py")), image_prefix="local",
        )
        return plan_instance(
            instance_id=instance.instance_id, base_commit=instance.base_commit, spec=spec, env=env,
            recipe_digest=content_key(LOCAL_RECIPE, recipe_digest("setup_repo.sh.j2", *INSTANCE_HELPERS)), image_prefix="local",
        )

    def layer_dir(self, env: EnvPlan) -> Path:
        return self.envs_dir / "layers" / env.key[:16]

    def instance_dir(self, plan: InstancePlan) -> Path:
        return self.envs_dir / plan.key[:16]

    def ref(self, plan: InstancePlan) -> EnvironmentRef:
        root = self.instance_dir(plan)
        return EnvironmentRef(key=plan.key, root=str(root), python=str(root / "python" / "bin" / "python"))

    # --- entry points -------------------------------------------------------

    def ensure_instance(self, instance: Instance) -> BuiltImage:
        """The instance's environment, found or built; :class:`BuildError` when it cannot be had."""
        started = time.monotonic()
        try:
            plan = self.plan(instance)
        except RepoError as exc:
            raise BuildError(f"{instance.instance_id}: {exc}") from exc
        root, layer = self.instance_dir(plan), self.layer_dir(plan.env)
        source = "cached"
        if not is_complete(root):
            self._check_host()
            self.ensure_env(plan.env)
            with key_lock(self.envs_dir / ".locks", root.name):
                if not is_complete(root):
                    self._progress(f"building the local environment of {instance.instance_id}")
                    self._build_instance(instance, plan, layer, root)
                    source = "built"
        return BuiltImage(instance.instance_id, self.ref(plan), source, time.monotonic() - started, str(layer))

    def ensure_env(self, env: EnvPlan) -> Path:
        """The dependency layer of a repo version, built once and shared by its instances."""
        layer = self.layer_dir(env)
        if is_complete(layer):
            return layer
        with key_lock(self.envs_dir / ".locks", f"layer-{layer.name}"):
            if is_complete(layer):
                return layer
            self._progress(
                f"building the local environment of {env.repo} {env.version} "
                f"(Python {env.python}, packages as of {env.cutoff or 'today'})"
            )
            started = time.monotonic()
            subject = f"the environment of {env.repo} {env.version}"
            build_log = self._log(f"env.{repo_slug(env.repo)}-{env.version}", subject, layer)
            with build_log, staging(layer) as tmp:
                self._build_env(env, tmp, layer, build_log)
            self._progress(f"built the environment of {env.repo} {env.version} in {time.monotonic() - started:.0f} s")
        return layer

    # --- building -----------------------------------------------------------

    def _check_host(self) -> None:
        reason = bwrap_available(self._bwrap)
        if reason is not None:
            raise BuildError(f"cannot build local environments: {reason}")
        cache = PurePosixPath(self.envs_dir)
        if any(PurePosixPath("/", name) in cache.parents for name in SYSTEM_DIRS):
            raise BuildError(f"the cache directory {self.cache_dir} must not be under a system directory ({', '.join(SYSTEM_DIRS)})")

    def _log(self, name: str, subject: str, final: Path) -> BuildLog:
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        return BuildLog(self.logs_dir / f"local.{slug}-{final.name}.log", subject)

    def _prefix(self, env: EnvPlan) -> Path:
        pythons = available_pythons(self.pyenv_root())
        if env.python not in pythons:
            raise BuildError(f"Python {env.python} is no longer under {self.pyenv_root()}/versions")
        return pythons[env.python].resolve()

    def _run(
        self, argv: list[str], what: str, build_log: BuildLog, deadline: float, *, env: EnvPlan, tmp: Path,
        python: tuple[str, Path], layer: Path, extra_rw: dict[str, Path] | None = None, workdir: str = "/",
    ) -> None:
        """One step in a build box: ``python`` is the environment's prefix (path in the box, host directory).

        The pyenv prefix it was copied from is readable too: its compiled-in
        paths (headers for C extensions) point there.
        """
        prefix = self._prefix(env)
        uv_cache, pip_cache = self.envs_dir / ".uv-cache", self.envs_dir / ".pip-cache"
        uv_cache.mkdir(parents=True, exist_ok=True)
        pip_cache.mkdir(parents=True, exist_ok=True)
        variables = {
            "PATH": f"{python[0]}/bin:{UV_DIR}:{BASE_PATH}",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            # Hermetic like an image build: no host pip/uv configuration, no downloaded Pythons.
            "PIP_CONFIG_FILE": os.devnull,
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            # Shared download caches (content-addressed); copies, so environments never share inodes with them.
            "UV_CACHE_DIR": str(uv_cache),
            "PIP_CACHE_DIR": str(pip_cache),
            "UV_LINK_MODE": "copy",
            **env.env_vars,
        }
        files = {target: layer / "system-files" / str(n) for n, target in enumerate(env.system_files)}
        rw = {python[0]: python[1], str(uv_cache): uv_cache, str(pip_cache): pip_cache, **(extra_rw or {})}
        command = box_command(
            self._bwrap or shutil.which("bwrap") or "bwrap", argv, tmp=tmp, env=variables,
            ro=[prefix], rw=rw, files={**files, f"{UV_DIR}/uv": _uv_binary()}, workdir=workdir,
        )
        run_logged(command, build_log, what, deadline, echo=shlex.join(argv))

    def _system_packages(self, env: EnvPlan, build_log: BuildLog) -> list[str]:
        """Check the host for the Debian packages the Docker recipe would install; returns the missing ones."""
        wanted = [*self.config.builder_apt_packages, *env.apt_packages]
        for command in env.system_commands:
            packages = apt_install_packages(command)
            wanted += packages
            if not packages:
                build_log.write(f"skipped system command (not run on the host): {command}\n")
        try:
            missing = missing_debian_packages(wanted)
        except BuildError as exc:
            build_log.write(f"cannot check system packages: {exc}\n")
            return []
        if missing:
            message = f"{env.repo} {env.version} wants Debian packages this host lacks: {' '.join(missing)}"
            build_log.write(message + "\n")
            log.warning("%s (apt-get install them if the build or the tests need them)", message)
        return missing

    def _build_env(self, env: EnvPlan, tmp: Path, final: Path, build_log: BuildLog) -> None:
        deadline = time.monotonic() + self.config.build_timeout_s
        scratch, python = tmp / "codemonkeys", tmp / "python"
        for directory in (scratch, tmp / "system-files", tmp / ".build-tmp"):
            directory.mkdir()
        shutil.copy2(_recipe_file("install_requirements.py"), scratch / "install_requirements.py")
        for name, lines in (
            ("seed_pip.txt", env.seed_pip), ("seed.txt", env.seed), ("build-constraints.txt", env.build_constraints),
            ("requirements.txt", env.requirements), ("pip_packages.txt", env.pip_packages),
        ):
            (scratch / name).write_text(_lines(lines), encoding="utf-8")
        for n, text in enumerate(env.system_files.values()):
            (tmp / "system-files" / str(n)).write_text(text, encoding="utf-8")
        missing = self._system_packages(env, build_log)
        # The Python layer of the images: CPython with its own pip, without the host's packages.
        prefix, python_path = self._prefix(env), str(final / "python")
        build_log.write(f"\n### copying Python {env.python} from {prefix}\n")
        copy_python(prefix, python)
        relocate(python, str(prefix), python_path)
        major = env.python.split(".")[0]
        (python / "bin" / "python").unlink(missing_ok=True)
        (python / "bin" / "python").symlink_to(f"python{major}")
        portable_python(python, build_log, deadline)

        def step(argv: list[str], what: str) -> None:
            self._run(argv, what, build_log, deadline, env=env, tmp=tmp / ".build-tmp",
                      python=(python_path, python), layer=tmp, extra_rw={SCRATCH: scratch})

        step(["python", "-c", _PYTHON_CHECK], f"checking Python {env.python}")
        step(["python", "-m", "ensurepip", "--default-pip"], "installing pip")
        args = with_python(env.installer_args, f"{python_path}/bin/python")
        for name, extra in _INSTALL_STEPS:
            step(["python", f"{SCRATCH}/install_requirements.py", "install", f"{SCRATCH}/{name}", *extra, *args],
                 f"installing {name}")
        self._compile(step)
        shutil.rmtree(tmp / ".build-tmp")
        self._write_meta(tmp / "env.json", {
            "repo": env.repo, "version": env.version, "python": env.python, "python_prefix": str(prefix),
            "cutoff": env.cutoff, "key": env.key, "missing_system_packages": missing, "log": str(build_log.path),
        })

    @staticmethod
    def _compile(step: Callable[[list[str], str], None]) -> None:
        """Sandboxes mount the environment read-only: compile its packages now, or every test run does."""
        script = 'python -m compileall -q -j 0 "$(python -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])")" || true'
        step(["sh", "-c", script], "compiling site-packages")

    def _build_instance(self, instance: Instance, plan: InstancePlan, layer: Path, final: Path) -> None:
        started = time.monotonic()
        deadline = started + self.config.build_timeout_s
        with self._log(instance.instance_id, instance.instance_id, final) as build_log, staging(final) as tmp:
            build_log.write(f"instance {instance.instance_id} on the environment layer {layer}\n")
            python, python_path = tmp / "python", str(final / "python")
            clone_python(layer / "python", python, build_log, deadline)
            relocated = relocate(python, str(layer / "python"), python_path)
            build_log.write(f"relocated {len(relocated)} file(s) from {layer / 'python'} to {python_path}\n")
            shutil.copytree(layer / "codemonkeys", tmp / "codemonkeys")
            try:
                git_dir = self.source.ensure_commit(instance.repo, instance.base_commit)
                materialize(git_dir, instance.base_commit, tmp / "testbed")
            except RepoError as exc:
                raise build_log.failure(str(exc)) from exc
            script = self._templates.get_template("setup_repo.sh.j2").render(
                pre_install=plan.repo_commands, deps_targets=plan.deps_targets, install=plan.install,
                post_install=plan.post_install, wheelhouse=WHEELHOUSE,
                installer_args=shlex.join(with_python(plan.env.installer_args, f"{python_path}/bin/python")),
            )
            (tmp / "codemonkeys" / "setup_repo.sh").write_text(script, encoding="utf-8")
            for helper in INSTANCE_HELPERS:
                shutil.copy2(_recipe_file(helper), tmp / "codemonkeys" / helper)
            (tmp / ".build-tmp").mkdir()

            def step(argv: list[str], what: str) -> None:
                self._run(argv, what, build_log, deadline, env=plan.env, tmp=tmp / ".build-tmp",
                          python=(python_path, python), layer=layer, workdir=TESTBED,
                          extra_rw={SCRATCH: tmp / "codemonkeys", TESTBED: tmp / "testbed"})

            step(["bash", f"{SCRATCH}/setup_repo.sh"], "setup_repo.sh")
            self._compile(step)
            shutil.rmtree(tmp / ".build-tmp")
            env_meta = json.loads((layer / "env.json").read_text(encoding="utf-8"))
            self._write_meta(tmp / "local-env.json", {
                "instance_id": instance.instance_id, "repo": instance.repo, "version": instance.version,
                "base_commit": instance.base_commit, "key": plan.key, "env_key": plan.env.key, "layer": str(layer),
                "python": plan.env.python, "missing_system_packages": env_meta.get("missing_system_packages", []),
                "build_s": round(time.monotonic() - started, 1), "log": str(build_log.path),
            })
        self._progress(f"built the local environment of {instance.instance_id} in {time.monotonic() - started:.0f} s")

    @staticmethod
    def _write_meta(path: Path, data: dict[str, object]) -> None:
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

