"""A real environment image built from a tiny repo, and its gold patch graded in a real sandbox.

The repo (``acme/calc``, made by :mod:`codemonkeys.testing.fake_swebench`)
is unknown to swebench, so its spec comes from a config override, as the
bundled example instance's does. Layers are keyed by content and the repo is
deterministic, so a second run of this file reuses every image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sandbox_support import docker_client as _docker_client  # noqa: F401

from codemonkeys.config import EnvironmentConfig, SandboxConfig
from codemonkeys.env.images import ImageBuilder, available_pythons, recipe_digest
from codemonkeys.env.validate import grade_instances, load_report
from codemonkeys.errors import BuildError
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.swebench.instances import Instance, parse_instances
from codemonkeys.testing.fake_swebench import FUTURE_MARKER, REPO, VERSION, make_fake_repo, spec_fields

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PYENV = Path.home() / ".pyenv"
# A spec's post_install runs in /testbed after the install, with the shipped helpers at hand.
POST_INSTALL = 'test -f /opt/codemonkeys/matplotlib_freetype.py && echo "ran in $(pwd)" > /opt/codemonkeys/post_install.txt'


def _python() -> str:
    minors = sorted({".".join(v.split(".")[:2]) for v in available_pythons(PYENV)}, key=lambda v: tuple(map(int, v.split("."))))
    usable = [m for m in minors if m.startswith("3.") and int(m.split(".")[1]) >= 8]
    if not usable:
        pytest.skip(f"no CPython >= 3.8 under {PYENV}/versions")
    return "3.11" if "3.11" in usable else usable[-1]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    return make_fake_repo(tmp_path_factory.mktemp("fake-swebench"))


@pytest.fixture(scope="module")
def instance(fake) -> Instance:
    (parsed,) = parse_instances([fake.row], "fake")
    return parsed


@pytest.fixture(scope="module")
def env_config(fake, tmp_path_factory: pytest.TempPathFactory) -> EnvironmentConfig:
    return EnvironmentConfig(
        mirror_dir=fake.mirrors,
        cache_dir=tmp_path_factory.mktemp("env-cache"),
        pull_official=False,
        builder_apt_packages=[],  # the tiny repo compiles nothing
        image_prefix="codemonkeys-test",
        spec_overrides={REPO: {VERSION: {**spec_fields(_python()), "post_install": [POST_INSTALL]}}},
        pyenv_root=PYENV,
    )


@pytest.fixture(scope="module")
def builder(docker_client, env_config: EnvironmentConfig) -> ImageBuilder:  # type: ignore[no-untyped-def]
    return ImageBuilder(env_config, client=docker_client)


@pytest.fixture(scope="module")
def built(builder: ImageBuilder, instance: Instance):  # type: ignore[no-untyped-def]
    return builder.ensure_instance(instance)


@pytest.fixture(scope="module")
def docker_factory(docker_client):  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

    factory = DockerSandboxFactory(SandboxConfig(backend="docker", memory="1g"), client=docker_client)
    yield factory
    factory.close()


def test_image_is_built_once_and_reused(builder: ImageBuilder, built, instance: Instance, env_config: EnvironmentConfig) -> None:  # type: ignore[no-untyped-def]
    assert built.source in ("built", "cached")
    assert built.ref.image and built.ref.image.startswith("codemonkeys-test/sweb.eval.x86_64.acme__calc-1:")
    again = builder.ensure_instance(instance)
    assert again.source == "cached" and again.ref == built.ref
    logs = list((env_config.cache_dir / "build-logs").glob("*.log")) if built.source == "built" else []  # type: ignore[operator]
    assert built.source == "cached" or any("acme__calc-1" in p.name for p in logs)


def test_post_install_runs_after_the_install_with_the_helpers_at_hand(docker_client, built) -> None:  # type: ignore[no-untyped-def]
    out = docker_client.containers.run(
        built.ref.image, ["cat", "/opt/codemonkeys/post_install.txt"], remove=True, network_mode="none"
    )
    assert out.decode().strip() == "ran in /testbed"


async def test_grading_reinstalls_offline_from_the_wheelhouse(built, docker_factory) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.env.plan import WHEELHOUSE

    async with docker_factory.sandbox(built.ref) as sandbox:  # no network
        kept = await sandbox.exec(["ls", WHEELHOUSE])
        assert "setuptools-" in kept.output and "wheel-" in kept.output  # pip's build requirements
        again = await sandbox.exec(
            ["sh", "-c", f"PIP_NO_INDEX=1 PIP_FIND_LINKS={WHEELHOUSE} python -m pip install -e . 2>&1"], timeout_s=300
        )
        assert again.exit_code == 0, again.output


async def test_testbed_is_at_the_base_commit_without_future(built, docker_factory, fake) -> None:  # type: ignore[no-untyped-def]
    async with docker_factory.sandbox(built.ref) as sandbox:
        parent = await sandbox.exec(["git", "rev-parse", "HEAD^"])
        assert parent.output.strip() == fake.base_commit  # HEAD is the setup commit on top of it
        log = await sandbox.exec(["git", "log", "--all", "--format=%H %s"])
        assert FUTURE_MARKER not in log.output and fake.future_commit not in log.output
        tags = await sandbox.exec(["git", "tag"])
        assert sorted(tags.output.split()) == ["v0.0.9", "v0.1"]
        imported = await sandbox.exec(["python", "-c", "import calc, pytest; print(calc.__file__)"])
        assert imported.output.strip() == "/testbed/calc/__init__.py"
        assert (await sandbox.exec(["git", "status", "--porcelain"])).output.strip() == ""


async def test_gold_patch_resolves_and_bad_patches_do_not(built, builder: ImageBuilder, docker_factory, instance: Instance, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    class Ready:
        def ensure_instance(self, _instance: Instance):  # type: ignore[no-untyped-def]
            return built

    wrong = instance.patch.replace('raise ZeroDivisionError("division by zero")', "return None")
    cases = {"gold": instance.patch, "wrong": wrong, "broken": "--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n"}
    results = {}
    for name, patch in cases.items():
        report = await grade_instances(
            [instance], {instance.instance_id: patch}, images=Ready(), factory=docker_factory,
            registry=builder.registry, timeout_s=300, output=tmp_path / f"{name}.json",
        )
        results[name] = report[instance.instance_id]
    gold = results["gold"]
    assert gold["status"] == "resolved", gold
    assert gold["tests"]["FAIL_TO_PASS"]["success"] == ["tests/test_calc.py::test_divide_by_zero"]
    assert sorted(gold["tests"]["PASS_TO_PASS"]["success"]) == ["tests/test_calc.py::test_add", "tests/test_calc.py::test_divide"]
    assert results["wrong"]["status"] == "unresolved"
    assert results["wrong"]["tests"]["FAIL_TO_PASS"]["failure"] == ["tests/test_calc.py::test_divide_by_zero"]
    assert results["broken"]["status"] == "unresolved" and not results["broken"]["patch_applied"]
    assert json.loads((tmp_path / "gold.json").read_text())[instance.instance_id]["status"] == "resolved"


async def test_specs_asking_for_cpus_get_them(built, docker_factory, instance: Instance, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.env.specs import SpecRegistry

    class Ready:
        def ensure_instance(self, _instance: Instance):  # type: ignore[no-untyped-def]
            return built

    asked: list[float] = []

    def factory_for(cpus: float):  # type: ignore[no-untyped-def]
        asked.append(cpus)
        return docker_factory

    registry = SpecRegistry([{REPO: {VERSION: {**spec_fields(_python()), "nano_cpus": 2_000_000_000}}}])
    report = await grade_instances(
        [instance], {instance.instance_id: instance.patch}, images=Ready(), factory=docker_factory,
        registry=registry, timeout_s=300, factory_for_cpus=factory_for,
    )
    assert asked == [2.0] and report[instance.instance_id]["status"] == "resolved"


async def test_tests_that_never_finish_grade_unresolved_as_the_harness(built, builder: ImageBuilder, docker_factory, instance: Instance) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.env.validate import grade_patch

    hangs = instance.patch.replace('raise ZeroDivisionError("division by zero")', "import time; time.sleep(600)")
    assert hangs != instance.patch
    spec = builder.registry.get(instance.repo, instance.version)
    report = await grade_patch(docker_factory, built.ref, instance, spec, hangs, timeout_s=20)
    assert report.status == "unresolved" and report.cause == "tests timed out after 20 s"


async def test_build_failures_are_errors_and_resume_skips_finished(builder: ImageBuilder, docker_factory, instance: Instance, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    class Broken:
        def ensure_instance(self, _instance: Instance):  # type: ignore[no-untyped-def]
            raise BuildError("pip exploded")

    output = tmp_path / "report.json"
    report = await grade_instances(
        [instance], {instance.instance_id: instance.patch}, images=Broken(), factory=docker_factory,
        registry=builder.registry, timeout_s=60, output=output,
    )
    entry = report[instance.instance_id]
    assert entry["status"] == "error" and "build failed (infra): pip exploded" in entry["cause"]
    # A finished entry is kept on a rerun; an error one is retried.
    saved = load_report(output)
    saved[instance.instance_id] = {**entry, "status": "resolved"}
    output.write_text(json.dumps(saved))
    again = await grade_instances(
        [instance], {instance.instance_id: instance.patch}, images=Broken(), factory=docker_factory,
        registry=builder.registry, timeout_s=60, output=output,
    )
    assert again[instance.instance_id]["status"] == "resolved"
    # --force regrades the listed instances and keeps the report's other entries.
    saved = load_report(output)
    saved["other__repo-1"] = {"status": "unresolved"}
    output.write_text(json.dumps(saved))
    forced = await grade_instances(
        [instance], {instance.instance_id: instance.patch}, images=Broken(), factory=docker_factory,
        registry=builder.registry, timeout_s=60, output=output, force=True,
    )
    assert forced[instance.instance_id]["status"] == "error"
    assert load_report(output)["other__repo-1"] == {"status": "unresolved"}


def test_a_failing_install_is_a_build_error_naming_the_log(docker_client, fake, instance: Instance, env_config: EnvironmentConfig) -> None:  # type: ignore[no-untyped-def]
    broken = env_config.model_copy(update={"spec_overrides": {REPO: {VERSION: {**spec_fields(_python()), "install": "exit 7"}}}})
    with pytest.raises(BuildError, match=r"acme__calc-1.*failed.*\n.*log: .*\.log"):
        ImageBuilder(broken, client=docker_client).ensure_instance(instance)


def test_recipe_digest_is_stable() -> None:
    assert recipe_digest("env.Dockerfile.j2") == recipe_digest("env.Dockerfile.j2") != recipe_digest("setup_repo.sh.j2")
    assert EnvironmentRef(key="k").image is None


def test_cli_validate_and_evaluate(built, fake, env_config: EnvironmentConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from codemonkeys.cli.main import main

    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text(json.dumps(fake.row) + "\n")
    config = tmp_path / "config.yaml"
    environment = env_config.model_dump(mode="json", exclude={"mirror_dir"})
    config.write_text(yaml.safe_dump({"environment": environment, "sandbox": {"backend": "docker", "memory": "1g"}}))
    report = tmp_path / "report.json"
    main(["env", "validate", "--dataset", str(dataset), "--instance-ids", "acme__calc-1",
          "--mirror-dir", str(fake.mirrors), "--output", str(report), "--config", str(config)])
    assert json.loads(report.read_text())["acme__calc-1"]["status"] == "resolved"
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"instance_id": "acme__calc-1", "model_name_or_path": "m", "model_patch": ""}) + "\n")
    main(["evaluate", str(predictions), "--dataset", str(dataset), "--mirror-dir", str(fake.mirrors), "--config", str(config)])
    graded = json.loads((tmp_path / "preds.report.json").read_text())["acme__calc-1"]
    assert graded["status"] == "unresolved" and graded["cause"] == "empty patch"
    assert "unresolved: 1" in capsys.readouterr().out
