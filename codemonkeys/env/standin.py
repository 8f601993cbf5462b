"""Stand-ins for official SWE-bench images, to prove the official path without Docker Hub.

``build_standin`` makes an image in the layout of swebench's Dockerfile
templates (see ``sandbox/env/standin.Dockerfile.j2``): ``/opt/miniconda3``
with its base ``bin`` first on ``PATH``, the repository's dependencies in the
``testbed`` env, conda's activation files, ``.bashrc`` activating testbed and
``/testbed`` set up and committed. A host CPython copy (pyenv, made
relocatable with patchelf) stands in for each Miniconda prefix; a shell
``conda`` function stands in for conda's activation (PATH, CONDA_PREFIX,
activate.d scripts). ``push_official`` tags it with the official name under a
registry namespace and pushes it, so ``environment.official_namespace`` can
pull it like any official image. Every image made here is labelled
``codemonkeys.standin=1``.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import BuildError, RepoError
from ..resources import resource_dir
from ..swebench.instances import Instance
from ..swebench.repo import materialize
from .images import ImageBuilder, available_pythons
from .localbuild import BuildLog, copy_python, portable_python
from .plan import content_key, official_image, split_pre_install
from .specs import choose_python

LABEL = "codemonkeys.standin"
_FILES = ("standin.Dockerfile.j2", "standin_setup_env.sh.j2", "standin_setup_repo.sh.j2")
_CONDA_FILES = ("standin/activate", "standin/conda", "standin/conda.sh", "standin/standin_marker.sh")


def _recipe(name: str) -> Path:
    return resource_dir("sandbox") / "env" / name


def _miniconda_tree(prefix: Path, dest: Path, log: BuildLog) -> None:
    """``dest`` laid out as /opt/miniconda3: base and envs/testbed, each a relocatable CPython copy."""
    deadline = time.monotonic() + 600
    copy_python(prefix, dest)
    copy_python(prefix, dest / "envs" / "testbed")
    for root in (dest, dest / "envs" / "testbed"):
        portable_python(root, log, deadline)
        (root / "conda-meta").mkdir(exist_ok=True)
        (root / "conda-meta" / "history").write_text("# CodeMonkeys stand-in\n", encoding="utf-8")
    (dest / "etc" / "profile.d").mkdir(parents=True, exist_ok=True)
    (dest / "condabin").mkdir(exist_ok=True)
    shutil.copy(_recipe("standin/conda.sh"), dest / "etc" / "profile.d" / "conda.sh")
    shutil.copy(_recipe("standin/activate"), dest / "bin" / "activate")
    shutil.copy(_recipe("standin/conda"), dest / "bin" / "conda")
    activate_d = dest / "envs" / "testbed" / "etc" / "conda" / "activate.d"
    activate_d.mkdir(parents=True, exist_ok=True)
    shutil.copy(_recipe("standin/standin_marker.sh"), activate_d / "codemonkeys_standin.sh")


def standin_tag(builder: ImageBuilder, instance: Instance) -> str:
    """The stand-in's local tag: a content key of the recipe, the instance and the spec."""
    spec = builder.registry.get(instance.repo, instance.version)
    recipe = [(name, _recipe(name).read_text(encoding="utf-8")) for name in (*_FILES, *_CONDA_FILES)]
    key = content_key("standin", instance.instance_id, instance.base_commit, spec.python, spec.install,
                      spec.pip_packages, spec.setup_commands, recipe)
    return f"{builder.config.image_prefix}/standin.{instance.instance_id.lower()}:{key[:16]}"


def build_standin(builder: ImageBuilder, instance: Instance) -> str:
    """Build (once) the official-layout stand-in of ``instance``; returns its local tag."""
    tag = standin_tag(builder, instance)
    if builder.exists(tag):
        return tag
    spec = builder.registry.get(instance.repo, instance.version)
    python = choose_python(spec.python, list(available_pythons(builder._pyenv_root())))
    prefix = available_pythons(builder._pyenv_root())[python]
    plan = builder.plan(instance)
    _, repo_commands = split_pre_install(spec.setup_commands)
    # The build's index and certificates (as the env layers get them), for the setup scripts only.
    build_env = {k: v for k, v in plan.env.env_vars.items() if k.startswith(("PIP_", "SSL_", "UV_")) and "CONSTRAINT" not in k}
    packages = " ".join(shlex.quote(p) for p in [*plan.env.requirements, *plan.env.pip_packages])
    with tempfile.TemporaryDirectory(prefix="codemonkeys-standin-") as tmp:
        work = Path(tmp)
        with BuildLog(builder.logs_dir / f"standin.{instance.instance_id}.log", f"stand-in of {instance.instance_id}") as log:
            _miniconda_tree(prefix, work / "miniconda3", log)
        try:
            materialize(builder.source.ensure_commit(instance.repo, instance.base_commit), instance.base_commit, work / "testbed")
        except RepoError as exc:
            raise BuildError(f"{instance.instance_id}: {exc}") from exc
        files: dict[str, bytes | Path] = {
            "Dockerfile": builder._render("standin.Dockerfile.j2", builder=builder.builder_tag(), major=python.split(".")[0]),
            "setup_env.sh": builder._render("standin_setup_env.sh.j2", packages=packages, env=build_env),
            "setup_repo.sh": builder._render(
                "standin_setup_repo.sh.j2", pre_install=repo_commands, install=spec.install, env=build_env
            ),
            "miniconda3": work / "miniconda3",
            "testbed": work / "testbed",
        }
        builder._build(tag, files, f"stand-in of {instance.instance_id}", {LABEL: "1", "codemonkeys.instance_id": instance.instance_id})
    return tag


def push_official(builder: ImageBuilder, local_tag: str, namespace: str, instance_id: str, *, keep_local: bool = False) -> str:
    """Push ``local_tag`` as the official image of ``instance_id`` under ``namespace`` (``HOST:PORT/swebench``).

    The pushed name is untagged locally afterwards (unless ``keep_local``), so
    the next ``ensure_instance`` really pulls it.
    """
    name = official_image(namespace, instance_id)
    repository, _, tag = name.rpartition(":")
    image = builder.client.images.get(local_tag)
    image.tag(repository, tag=tag)
    for chunk in builder.client.api.push(repository, tag=tag, stream=True, decode=True):
        if isinstance(chunk, dict) and chunk.get("error"):
            raise BuildError(f"pushing {name} failed: {chunk['error']}")
    if not keep_local:
        builder.client.images.remove(name)
    return name
