"""The official-image path, run here: stand-ins in swebench's layout served by a local registry.

* A registry that answers 404 for one image and never answers for another:
  the first falls back to a local build and the registry is asked again; the
  second costs one bounded wait, then the registry is not asked again; an
  instance that cannot be built either is a clear infrastructure failure.
* A stand-in of the bundled example (``/opt/miniconda3``, a ``testbed`` env,
  conda activation files, as swebench's Dockerfile templates make it) pushed
  to Debian's docker-registry on 127.0.0.1: the pulled image runs every
  command of the pipeline (reproduction tests, patch application, grading) in
  the ``testbed`` env, shown by scripts printing ``sys.prefix``; and
  ``codemonkeys run`` + ``evaluate`` on the example pull it and resolve.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sandbox_support import docker_client as _docker_client  # noqa: F401

from codemonkeys.config import EnvironmentConfig, SandboxConfig
from codemonkeys.env.grading import GradeReport
from codemonkeys.env.images import ImageBuilder
from codemonkeys.env.official import TESTBED_ENV, activation_delta, capture_script, split_capture
from codemonkeys.env.plan import official_image
from codemonkeys.errors import BuildError
from codemonkeys.examples import example_instance, example_mirror, example_spec_overrides
from codemonkeys.swebench.instances import parse_instances
from registry_support import BadRegistry, local_registry  # noqa: F401

PYENV = Path.home() / ".pyenv"
EXAMPLE_ID = "codemonkeys-examples__humansize-1"


def test_activation_delta_keeps_what_activation_changed() -> None:
    before = "PATH=/opt/miniconda3/bin:/usr/bin\0HOME=/root\0SHLVL=1\0LANG=C.UTF-8\0"
    after = (
        f"PATH={TESTBED_ENV}/bin:/opt/miniconda3/condabin:/opt/miniconda3/bin:/usr/bin\0HOME=/root\0SHLVL=2\0"
        f"LANG=C.UTF-8\0CONDA_PREFIX={TESTBED_ENV}\0MULTI=a\nb\0"
    )
    output = before + "\0@@codemonkeys-activated@@\0" + after
    got_before, got_after = split_capture(output)
    delta = activation_delta(got_before, got_after)
    assert delta == {
        "PATH": f"{TESTBED_ENV}/bin:/opt/miniconda3/condabin:/opt/miniconda3/bin:/usr/bin",
        "CONDA_PREFIX": TESTBED_ENV,
        "MULTI": "a\nb",
    }
    assert split_capture("A=1\0")[1] == {}
    assert "conda activate testbed" in capture_script()


def _config(tmp: Path, namespace: str, **extra: object) -> EnvironmentConfig:
    mirrors = tmp / "mirrors"
    example_mirror(mirrors)
    specs = example_spec_overrides()
    # A repo with a spec but no repository anywhere: an instance that cannot be built locally.
    specs["nobody/slow"] = dict(next(iter(specs.values())))
    return EnvironmentConfig(
        mirror_dir=mirrors, cache_dir=tmp / "cache", official_namespace=namespace,
        spec_overrides=specs, pyenv_root=PYENV, **extra,  # type: ignore[arg-type]
    )


@pytest.mark.docker
@pytest.mark.slow
def test_registry_404_falls_back_and_a_silent_one_is_given_up_once(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    example = example_instance()
    unknown = parse_instances([{**example.model_dump(mode="json"), "instance_id": "nobody__slow-1", "repo": "nobody/slow"}], "t")[0]
    with BadRegistry() as registry:
        builder = ImageBuilder(_config(tmp_path, f"{registry.address}/swebench", pull_timeout_s=4), client=docker_client)
        # 404: built here (or found built), and the registry stays in use.
        started = time.monotonic()
        built = builder.ensure_instance(example)
        assert built.source in ("built", "cached")
        assert not built.ref.exec_env
        assert any("manifests" in path for path in registry.requests), registry.requests
        assert not builder._registry_down
        # No answer: one bounded wait, then a clear build error for an instance we cannot build...
        asked = len(registry.requests)
        started = time.monotonic()
        slow = official_image(builder.config.official_namespace, unknown.instance_id)
        assert "slow" in slow
        with pytest.raises(BuildError) as failure:
            builder.ensure_instance(unknown)
        waited = time.monotonic() - started
        assert waited < 4 + 20, f"waited {waited:.0f} s on a silent registry"
        assert "registry unreachable" in str(failure.value) and "nobody/slow" in str(failure.value)
        assert builder._registry_down and len(registry.requests) > asked
        # ...and the registry is not asked again: the next instance builds (here: is found) at once.
        asked = len(registry.requests)
        started = time.monotonic()
        again = builder.ensure_instance(example)
        assert again.source == "cached" and len(registry.requests) == asked
        assert time.monotonic() - started < 4


@pytest.fixture(scope="module")
def pushed(docker_client, local_registry: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The example's stand-in, pushed to the local registry as its official image."""
    from codemonkeys.env.standin import build_standin, push_official

    tmp = tmp_path_factory.mktemp("standin")
    namespace = f"{local_registry}/swebench"
    builder = ImageBuilder(_config(tmp, namespace, pull_official=False), client=docker_client)
    tag = build_standin(builder, example_instance())
    name = push_official(builder, tag, namespace, EXAMPLE_ID)
    yield namespace, name
    try:
        docker_client.images.remove(name)
    except Exception:  # noqa: BLE001 - already gone
        pass


@pytest.mark.docker
@pytest.mark.slow
async def test_pulled_image_runs_every_command_in_the_testbed_env(docker_client, pushed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.env.validate import grade_patch
    from codemonkeys.execution import SandboxPool, TestRunner
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory
    from codemonkeys.store import RunStore

    namespace, name = pushed
    instance = example_instance()
    builder = ImageBuilder(_config(tmp_path, namespace), client=docker_client)
    built = builder.ensure_instance(instance)
    assert built.source == "pulled" and built.ref.image == name
    env = dict(built.ref.exec_env)
    assert env["PATH"].startswith(f"{TESTBED_ENV}/bin:") and env["CONDA_DEFAULT_ENV"] == "testbed"
    assert env["CODEMONKEYS_STANDIN_ACTIVATED"] == "testbed"  # activate.d ran

    script = "import os, sys\nprint('PREFIX=' + sys.prefix)\nprint('ENV=' + os.environ.get('CONDA_DEFAULT_ENV', ''))\n"
    factory = DockerSandboxFactory(SandboxConfig(backend="docker", memory="1g"), client=docker_client)
    try:
        async with SandboxPool(factory, built.ref, 1) as pool:
            runner = TestRunner(pool, RunStore.open(tmp_path / "store"), timeout_s=60)
            # A reproduction/selection test, on the original code and on a patched one.
            for patch in ("", instance.patch):
                run = await runner.run(patch, script)
                assert run.exit_code == 0, run.output
                assert f"PREFIX={TESTBED_ENV}" in run.output and "ENV=testbed" in run.output
        async with factory.sandbox(built.ref) as sandbox:
            # Patch application and any shell command: the testbed env's tools come first.
            result = await sandbox.exec(["sh", "-c", "for c in python pip; do command -v $c; done; git --version"])
            assert f"{TESTBED_ENV}/bin/python" in result.output and f"{TESTBED_ENV}/bin/pip" in result.output
        # Grading: the eval script's test command prints the interpreter's prefix before the tests.
        spec = builder.registry.get(instance.repo, instance.version)
        probe = spec.model_copy(update={"test_cmd": "python -c 'import sys; print(\"PREFIX=\" + sys.prefix)' && " + spec.test_command})
        log_path = tmp_path / "eval.log"
        report: GradeReport = await grade_patch(factory, built.ref, instance, probe, instance.patch, timeout_s=300, log_path=log_path)
        assert report.status == "resolved", report.cause
        assert f"PREFIX={TESTBED_ENV}" in log_path.read_text()
    finally:
        factory.close()


@pytest.mark.docker
@pytest.mark.slow
def test_example_run_and_evaluate_pull_from_the_registry(docker_client, pushed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.cli.main import main

    namespace, name = pushed
    try:
        docker_client.images.remove(name)  # a real pull, not a local hit
    except Exception:  # noqa: BLE001 - not there
        pass
    pulls = [f"environment.official_namespace={namespace}", "environment.pull_official=true", "environment.pull_timeout_s=60"]
    cache = f"environment.cache_dir={tmp_path / 'cache'}"
    run_dir = tmp_path / "run"
    main(["run", "example", "--dataset", "example", "--run-dir", str(run_dir), "--allow-oracle", "sandbox.backend=docker", cache, *pulls])
    docker_client.images.get(name)  # the run pulled it
    preds = [json.loads(line) for line in (run_dir / "all_preds.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == [EXAMPLE_ID] and preds[0]["model_patch"].strip()
    report_path = tmp_path / "report.json"
    main(["evaluate", str(run_dir / "all_preds.jsonl"), "--dataset", "example", "--output", str(report_path),
          "--set", cache, *[arg for pull in pulls for arg in ("--set", pull)]])
    entry = json.loads(report_path.read_text())[EXAMPLE_ID]
    assert entry["status"] == "resolved", entry
    assert entry["image_source"] == "pulled" and entry["image"] == name
