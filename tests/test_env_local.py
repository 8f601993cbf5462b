"""Local (bubblewrap) environments of the bundled example, built for real, and the pipeline's providers.

The example instance (``codemonkeys/examples/humansize``) is built into a
fresh cache with bwrap, then graded in BubblewrapSandboxes with the same
eval script and parser as Docker grading. A Docker test builds the same
example through ImageBuilder. Pure helpers are tested without sandboxes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from codemonkeys.config import Config, EnvironmentConfig, SandboxConfig
from codemonkeys.env.grading import GradeReport, eval_script, report_from_output
from codemonkeys.env.images import BuiltImage, ImageBuilder, available_pythons
from codemonkeys.env.local import LocalEnvBuilder, with_python
from codemonkeys.env.localbuild import (
    MARKER,
    BuildLog,
    apt_install_packages,
    box_command,
    clone_python,
    copy_python,
    relocate,
    run_logged,
    staging,
)
from codemonkeys.env.specs import EnvSpec
from codemonkeys.env.validate import EVAL_OUTPUT, EVAL_SCRIPT, grade_instances, grade_patch
from codemonkeys.errors import BuildError
from codemonkeys.examples import (
    example_instance,
    example_mirror,
    example_spec_overrides,
    prepare_example,
)
from codemonkeys.pipeline.environments import ThreadedEnvironments, environments_for
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.sandbox.bwrap_backend import BubblewrapSandboxFactory, bwrap_available
from codemonkeys.swebench.instances import Instance

INSTANCE = example_instance()


def _needs_bwrap() -> None:
    reason = bwrap_available()
    if reason is not None:
        pytest.skip(reason)


# --- the example, built with bwrap -----------------------------------------------


@pytest.fixture(scope="module")
def env_config(tmp_path_factory: pytest.TempPathFactory) -> EnvironmentConfig:
    _needs_bwrap()
    base = tmp_path_factory.mktemp("local-envs")
    mirror = example_mirror(base / "mirrors")
    config = EnvironmentConfig(
        mirror_dir=mirror.parent, cache_dir=base / "cache", spec_overrides=example_spec_overrides()
    )
    pythons = available_pythons(LocalEnvBuilder(config).pyenv_root())
    if not any(v.startswith("3.1") and int(v.split(".")[1]) >= 11 for v in pythons):
        pytest.skip("no CPython >= 3.11 in pyenv for the example")
    return config


@pytest.fixture(scope="module")
def builder(env_config: EnvironmentConfig) -> LocalEnvBuilder:
    return LocalEnvBuilder(env_config)


@pytest.fixture(scope="module")
def built(builder: LocalEnvBuilder) -> BuiltImage:
    return builder.ensure_instance(INSTANCE)


@pytest.fixture(scope="module")
def spec(builder: LocalEnvBuilder) -> EnvSpec:
    return builder.registry.get(INSTANCE.repo, INSTANCE.version)


@pytest.fixture
def factory(tmp_path: Path) -> BubblewrapSandboxFactory:
    work = tmp_path / "work"
    work.mkdir()
    return BubblewrapSandboxFactory(SandboxConfig(command_timeout_s=300, work_dir=work))


@pytest.mark.bwrap
@pytest.mark.slow
def test_built_once_then_a_cache_hit(builder: LocalEnvBuilder, built: BuiltImage) -> None:
    assert built.source == "built"
    root = Path(built.ref.root or "")
    assert root.parent == builder.envs_dir and built.ref.python == str(root / "python" / "bin" / "python")
    assert (root / MARKER).is_file() and os.stat(root).st_mode & 0o755 == 0o755
    meta = json.loads((root / "local-env.json").read_text())
    assert meta["instance_id"] == INSTANCE.instance_id and meta["python"].startswith("3.11")
    assert "setup_repo.sh" in Path(meta["log"]).read_text()
    # The testbed holds the base commit's past only, with the setup commit on top (as in the images).
    def git(*args: str) -> list[str]:
        return subprocess.run(["git", *args], cwd=root / "testbed", capture_output=True, text=True, check=True).stdout.split()

    assert git("rev-parse", "HEAD^") == [INSTANCE.base_commit]
    assert set(git("rev-list", "--all")) - set(git("rev-list", INSTANCE.base_commit)) == set(git("rev-parse", "HEAD"))
    assert git("remote") == [] and git("tag") == ["v0.3.0"]
    again = builder.ensure_instance(INSTANCE)
    assert again.source == "cached" and again.ref == built.ref
    assert not list(builder.envs_dir.glob(".tmp-*")) and not list(builder.envs_dir.glob("layers/.tmp-*"))


@pytest.mark.bwrap
@pytest.mark.slow
async def test_the_pipeline_provider_hands_out_the_built_environment(builder: LocalEnvBuilder, built: BuiltImage) -> None:
    provider = ThreadedEnvironments(builder)
    first, second = await asyncio.gather(provider.environment(INSTANCE), provider.environment(INSTANCE))
    assert first == second == built.ref


@pytest.mark.bwrap
@pytest.mark.slow
async def test_the_project_is_imported_from_the_sandbox_testbed(
    builder: LocalEnvBuilder, built: BuiltImage, factory: BubblewrapSandboxFactory
) -> None:
    async with factory.sandbox(built.ref) as sandbox:
        imported = await sandbox.exec(["python", "-c", "import humansize, sys; print(humansize.__file__); print(sys.prefix)"])
        assert imported.exit_code == 0, imported.output
        module, prefix = imported.output.split()
        assert module == "/testbed/src/humansize/__init__.py"
        assert prefix == str(Path(built.ref.root or "") / "python")
        # The environment's Python stands alone: the host's pyenv is not even visible.
        pyenv = str(builder.pyenv_root())
        assert (await sandbox.exec(["sh", "-c", f'test -e "{pyenv}" || echo absent'])).output.strip() == "absent"
        # A symlinked interpreter keeps the packages (tox --current-env links it; a venv would be lost).
        linked = await sandbox.exec(["sh", "-c", 'ln -s "$(command -v python)" /tmp/py && /tmp/py -c "import pytest, humansize"'])
        assert linked.exit_code == 0, linked.output
        # The shared environment is read-only in sandboxes; the testbed copy is not.
        script = 'touch "$1/lib/x" 2>/dev/null && echo writable || echo read-only; touch /testbed/x && echo ok'
        touched = await sandbox.exec(["sh", "-c", script, "sh", prefix])
        assert touched.output.split() == ["read-only", "ok"]


async def _grade_base(factory: BubblewrapSandboxFactory, ref: EnvironmentRef, spec: EnvSpec) -> GradeReport:
    """The eval script on the unpatched testbed, as ``grade_patch`` runs it for a patch."""
    async with factory.sandbox(ref) as sandbox:
        await sandbox.write_file(EVAL_SCRIPT, eval_script(INSTANCE, spec))
        result = await sandbox.exec(["bash", "-c", f"bash {EVAL_SCRIPT} > {EVAL_OUTPUT} 2>&1"], timeout_s=300)
        assert not result.timed_out
        return report_from_output(INSTANCE, spec, await sandbox.read_file(EVAL_OUTPUT))


@pytest.mark.bwrap
@pytest.mark.slow
async def test_fail_to_pass_fails_on_base_and_passes_with_the_gold_patch(
    built: BuiltImage, factory: BubblewrapSandboxFactory, spec: EnvSpec
) -> None:
    base, gold = await asyncio.gather(
        _grade_base(factory, built.ref, spec),
        grade_patch(factory, built.ref, INSTANCE, spec, INSTANCE.patch, timeout_s=300),
    )
    assert base.status == "unresolved"
    assert sorted(base.tests["FAIL_TO_PASS"]["failure"]) == sorted(INSTANCE.FAIL_TO_PASS)
    assert sorted(base.tests["PASS_TO_PASS"]["success"]) == sorted(INSTANCE.PASS_TO_PASS)
    assert gold.status == "resolved", gold
    assert sorted(gold.tests["FAIL_TO_PASS"]["success"]) == sorted(INSTANCE.FAIL_TO_PASS)


@pytest.mark.bwrap
@pytest.mark.slow
async def test_instances_of_one_version_share_the_dependency_layer(
    builder: LocalEnvBuilder, built: BuiltImage, factory: BubblewrapSandboxFactory
) -> None:
    layer = Path(built.env_tag or "")
    layer_stamp = (layer / MARKER).stat().st_mtime_ns
    sibling = INSTANCE.model_copy(update={"instance_id": "codemonkeys-examples__humansize-2"})
    other = builder.ensure_instance(sibling)
    assert other.source == "built" and other.env_tag == built.env_tag and other.ref.root != built.ref.root
    assert (layer / MARKER).stat().st_mtime_ns == layer_stamp  # reused, not rebuilt
    python = Path(other.ref.root or "") / "python"
    assert (python / "bin" / "pytest").read_text().startswith(f"#!{python}/bin/python")
    # The standard library is shared with the layer, the packages are the instance's own.
    assert (python / "lib").stat().st_ino != (layer / "python" / "lib").stat().st_ino
    stdlib = next(python.glob("lib/python3.*/os.py"))
    assert stdlib.stat().st_ino == (layer / "python" / stdlib.relative_to(python)).stat().st_ino
    installed = next(python.glob("lib/python3.*/site-packages/pytest/__init__.py"))
    assert installed.stat().st_ino != (layer / "python" / installed.relative_to(python)).stat().st_ino
    async with factory.sandbox(other.ref) as sandbox:
        result = await sandbox.exec(["pytest", "-q", "tests/test_times.py"])
        assert result.exit_code == 0 and "passed" in result.output, result.output


@pytest.mark.bwrap
@pytest.mark.slow
def test_a_failing_install_is_a_build_error_with_the_log_tail(env_config: EnvironmentConfig, built: BuiltImage) -> None:
    fields = {**example_spec_overrides()[INSTANCE.repo][INSTANCE.version], "install": "echo installing && exit 7"}
    broken = LocalEnvBuilder(env_config.model_copy(update={"spec_overrides": {INSTANCE.repo: {INSTANCE.version: fields}}}))
    with pytest.raises(BuildError, match=r"building codemonkeys-examples__humansize-1 failed: setup_repo.sh exited with 7\nlog: .*\.log\n(.|\n)*installing") as caught:
        broken.ensure_instance(INSTANCE)
    assert "BUILD FAILED" in Path(str(caught.value).split("log: ")[1].split("\n")[0]).read_text()
    plan = broken.plan(INSTANCE)
    assert not broken.instance_dir(plan).exists() and not list(broken.envs_dir.glob(".tmp-*"))
    assert broken.layer_dir(plan.env) == Path(built.env_tag or "")  # the install is not part of the layer


# --- the example through Docker ----------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_the_example_builds_and_resolves_as_a_docker_image(tmp_path_factory: pytest.TempPathFactory) -> None:
    from codemonkeys.env.images import ImageBuilder
    from codemonkeys.errors import SandboxError
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory, connect

    try:
        client = connect()
    except SandboxError as exc:
        pytest.skip(f"no Docker daemon answers: {exc}")
    base = tmp_path_factory.mktemp("example-docker")
    config = EnvironmentConfig(
        mirror_dir=example_mirror(base / "mirrors").parent, cache_dir=base / "cache", pull_official=False,
        builder_apt_packages=[], image_prefix="codemonkeys-test", spec_overrides=example_spec_overrides(),
    )
    builder = ImageBuilder(config, client=client)
    factory = DockerSandboxFactory(SandboxConfig(backend="docker", memory="1g"), client=client)
    try:
        report = asyncio.run(grade_instances(
            [INSTANCE], {INSTANCE.instance_id: INSTANCE.patch}, images=builder, factory=factory,
            registry=builder.registry, timeout_s=300,
        ))
    finally:
        factory.close()
    entry = report[INSTANCE.instance_id]
    assert entry["status"] == "resolved", entry
    assert sorted(entry["tests"]["FAIL_TO_PASS"]["success"]) == sorted(INSTANCE.FAIL_TO_PASS)


# --- pure helpers --------------------------------------------------------------------


def test_installer_args_point_at_the_local_python() -> None:
    args = "--python /opt/venv/bin/python --cutoff 2024-03-01 --ladder-years 1,2,3"
    assert with_python(args, "/c/e/python/bin/python") == [
        "--python", "/c/e/python/bin/python", "--cutoff", "2024-03-01", "--ladder-years", "1,2,3"
    ]
    assert with_python("", "/v/bin/python") == ["--python", "/v/bin/python"]


def test_apt_install_packages_reads_swebench_pre_install_commands() -> None:
    command = "apt-get -y update && apt-get -y upgrade && DEBIAN_FRONTEND=noninteractive apt-get install -y imagemagick ffmpeg"
    assert apt_install_packages(command) == ["imagemagick", "ffmpeg"]
    assert apt_install_packages("sudo apt install -y --no-install-recommends libenchant-2-dev hunspell-en-us=1.0; ls") == [
        "libenchant-2-dev", "hunspell-en-us"
    ]
    assert apt_install_packages("echo 'en_US UTF-8' > /etc/locale.gen") == []
    assert apt_install_packages("locale-gen en_US.UTF-8") == []


def _fake_python(root: Path) -> Path:
    """A pyenv-like prefix: an ELF 'binary', scripts, a stdlib module, host packages."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3.11").write_bytes(b"\x7fELF fake")
    (root / "bin" / "python3").symlink_to("python3.11")
    (root / "bin" / "pydoc3").write_text(f"#!{root}/bin/python3.11\nimport pydoc\n")
    (root / "bin" / "flask").write_text(f"#!{root}/bin/python3.11\nimport flask\n")
    lib = root / "lib" / "python3.11"
    (lib / "site-packages" / "flask").mkdir(parents=True)
    (lib / "site-packages" / "flask" / "__init__.py").write_text("")
    (lib / "idlelib").mkdir()
    (lib / "os.py").write_text("# os\n")
    return root


def test_python_copies_leave_host_packages_and_share_the_stdlib_with_clones(tmp_path: Path) -> None:
    host = _fake_python(tmp_path / "pyenv" / "3.11.7")
    layer = tmp_path / "layer" / "python"
    copy_python(host, layer)
    assert sorted(p.name for p in (layer / "bin").iterdir()) == ["pydoc3", "python3", "python3.11"]
    assert list((layer / "lib" / "python3.11" / "site-packages").iterdir()) == []
    assert not (layer / "lib" / "python3.11" / "idlelib").exists()
    assert relocate(layer, str(host), str(layer)) == [layer / "bin" / "pydoc3"]
    assert (layer / "bin" / "pydoc3").read_text().startswith(f"#!{layer}/bin/python3.11")
    (layer / "lib" / "python3.11" / "site-packages" / "pkg.py").write_text("")
    (tmp_path / "instance").mkdir()
    with BuildLog(tmp_path / "clone.log", "a clone") as build_log:
        clone_python(layer, tmp_path / "instance" / "python", build_log, time.monotonic() + 60)
    clone = tmp_path / "instance" / "python"
    assert (clone / "lib" / "python3.11" / "os.py").stat().st_ino == (layer / "lib" / "python3.11" / "os.py").stat().st_ino
    for part in ("bin/python3.11", "lib/python3.11/site-packages/pkg.py"):
        assert (clone / part).stat().st_ino != (layer / part).stat().st_ino, part
    assert os.readlink(clone / "bin" / "python3") == "python3.11"


def test_relocate_rewrites_recorded_paths_only(tmp_path: Path) -> None:
    old, new = "/cache/layers/abc/python", "/cache/def/python"
    prefix = tmp_path / "python"
    (prefix / "bin").mkdir(parents=True)
    site = prefix / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    script = prefix / "bin" / "pytest"
    script.write_text(f"#!{old}/bin/python\nimport pytest\n")
    script.chmod(0o755)
    (prefix / "bin" / "native").write_bytes(f"\0ELF{old}".encode())
    (prefix / "bin" / "python").symlink_to("python3.11")
    (site / "paths.pth").write_text(f"{old}/extra\n")
    (site / "other.py").write_text(f"X = '{old}'\n")
    (prefix / "lib" / "python3.11" / "stdlib.py").write_text(f"X = '{old}'\n")
    changed = relocate(prefix, old, new)
    assert sorted(p.name for p in changed) == ["paths.pth", "pytest"]
    assert script.read_text().startswith(f"#!{new}/bin/python") and os.access(script, os.X_OK)
    assert (prefix / "bin" / "native").read_bytes() == f"\0ELF{old}".encode()
    assert (site / "other.py").read_text() == f"X = '{old}'\n"
    assert (prefix / "lib" / "python3.11" / "stdlib.py").read_text() == f"X = '{old}'\n"
    assert os.readlink(prefix / "bin" / "python") == "python3.11"


def test_staging_renames_on_success_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "entries" / "k1"
    with pytest.raises(RuntimeError), staging(final) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("build broke")
    assert not final.exists() and not list(final.parent.iterdir())
    with staging(final) as tmp:
        (tmp / "whole").write_text("x")
    assert (final / "whole").is_file() and (final / MARKER).is_file()


def test_build_steps_log_and_fail_with_the_tail(tmp_path: Path) -> None:
    with BuildLog(tmp_path / "b.log", "the thing") as build_log:
        run_logged(["sh", "-c", "echo first step"], build_log, "step one", time.monotonic() + 60)
        with pytest.raises(BuildError, match=r"building the thing failed: step two exited with 3\nlog: .*b\.log\n(.|\n)*oops"):
            run_logged(["sh", "-c", "echo oops; exit 3"], build_log, "step two", time.monotonic() + 60)
        with pytest.raises(BuildError, match="timed out"):
            run_logged(["sleep", "30"], build_log, "slow step", time.monotonic() + 0.5)
    assert "first step" in (tmp_path / "b.log").read_text()


@pytest.mark.bwrap
def test_build_boxes_have_network_writable_binds_and_system_files(tmp_path: Path) -> None:
    _needs_bwrap()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "mplsetup.cfg").write_text("[libs]\nsystem_qhull = True\n")
    script = "cat /etc/mplsetup.cfg && test -r /etc/passwd && echo made > /opt/work/out && ! touch /etc/passwd 2>/dev/null"
    command = box_command(
        "bwrap", ["sh", "-c", script], tmp=tmp_path / "tmp", env={"PATH": "/usr/bin:/bin"},
        rw={"/opt/work": tmp_path / "work"}, files={"/etc/mplsetup.cfg": tmp_path / "mplsetup.cfg"},
    )
    assert "--unshare-net" not in command and "--unshare-all" not in command
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "system_qhull = True" in result.stdout
    assert (tmp_path / "work" / "out").read_text() == "made\n"
    assert not Path("/etc/mplsetup.cfg").exists()


def test_prepare_example_writes_a_dataset_mirror_and_overrides(tmp_path: Path) -> None:
    from codemonkeys.config import load_config
    from codemonkeys.swebench.instances import load_instances

    setup = prepare_example(tmp_path / "run")
    config = load_config(None, setup.overrides)
    assert config.environment.mirror_dir == setup.mirror_dir
    (loaded,) = load_instances(setup.dataset)
    assert loaded == INSTANCE
    spec = LocalEnvBuilder(config.environment).registry.get(loaded.repo, loaded.version)
    assert spec.log_parser == "parse_log_pytest" and spec.install == "python -m pip install -e ."
    assert prepare_example(tmp_path / "run").mirror_dir == setup.mirror_dir  # idempotent


# --- the pipeline's providers ----------------------------------------------------------


class CountingBuilder:
    """A builder that takes a while, counts builds, and records overlapping builds per repo version."""

    def __init__(self, fail_first: bool = False) -> None:
        self.builds: list[str] = []
        self.running: dict[tuple[str, str], int] = {}
        self.overlap = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def ensure_instance(self, instance: Instance) -> BuiltImage:
        key = (instance.repo, instance.version)
        with self._lock:
            self.running[key] = self.running.get(key, 0) + 1
            self.overlap = max(self.overlap, self.running[key])
            self.builds.append(instance.instance_id)
            fail = self.fail_first and len(self.builds) == 1
        time.sleep(0.05)
        with self._lock:
            self.running[key] -= 1
        if fail:
            raise BuildError("pip exploded")
        ref = EnvironmentRef(key=f"k-{instance.instance_id}", root=f"/envs/{instance.instance_id}")
        return BuiltImage(instance.instance_id, ref, "built", 0.05)


async def test_concurrent_asks_share_one_build_and_versions_build_one_at_a_time() -> None:
    builder = CountingBuilder()
    provider = ThreadedEnvironments(builder, parallel=4)
    second = INSTANCE.model_copy(update={"instance_id": "codemonkeys-examples__humansize-2"})
    refs = await asyncio.gather(*[provider.environment(i) for i in (INSTANCE, INSTANCE, second, INSTANCE, second)])
    assert sorted(builder.builds) == sorted([INSTANCE.instance_id, second.instance_id])
    assert builder.overlap == 1
    assert refs[0] is refs[1] is refs[3] and refs[2].root == f"/envs/{second.instance_id}"
    assert await provider.environment(INSTANCE) is refs[0] and len(builder.builds) == 2


async def test_a_failed_build_is_retried_on_the_next_ask() -> None:
    builder = CountingBuilder(fail_first=True)
    provider = ThreadedEnvironments(builder)
    with pytest.raises(BuildError, match="pip exploded"):
        await provider.environment(INSTANCE)
    ref = await provider.environment(INSTANCE)
    assert ref.key == f"k-{INSTANCE.instance_id}" and len(builder.builds) == 2


def test_environments_for_follows_the_sandbox_backend(tmp_path: Path) -> None:
    config = Config.model_validate({"environment": {"cache_dir": str(tmp_path)}})

    class SomeFactory:
        def sandbox(self, env: EnvironmentRef) -> object:
            raise AssertionError("not used")

    assert isinstance(environments_for(SomeFactory(), config).builder, ImageBuilder)  # type: ignore[arg-type, attr-defined]
    bwrap_config = config.model_copy(update={"sandbox": SandboxConfig(backend="bubblewrap")})
    local = environments_for(SomeFactory(), bwrap_config)  # type: ignore[arg-type]
    assert isinstance(local, ThreadedEnvironments) and isinstance(local.builder, LocalEnvBuilder)
    if bwrap_available() is None:
        factory = BubblewrapSandboxFactory(SandboxConfig())
        assert isinstance(environments_for(factory, config).builder, LocalEnvBuilder)  # type: ignore[attr-defined]


def test_the_c_libraries_of_conda_packages_are_checked_on_the_host_too(env_config: EnvironmentConfig) -> None:
    overrides = example_spec_overrides()
    for fields in overrides[INSTANCE.repo].values():
        fields["packages"] = "gdal=3.1 python-graphviz"
    config = env_config.model_copy(update={"spec_overrides": overrides})
    plan = LocalEnvBuilder(config).plan(INSTANCE)
    assert plan.env.apt_packages[-3:] == ["libgdal-dev", "gdal-bin", "graphviz"]
