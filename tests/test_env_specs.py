"""Spec lookup, requirement derivation and image planning: the pure side of environment images."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from codemonkeys.env.plan import (
    IndexSettings,
    content_key,
    install_targets,
    official_image,
    parse_pip_config,
    plan_environment,
    plan_instance,
    split_pre_install,
)
from codemonkeys.env.requirements import CondaMap, conda_to_pip, env_requirements, from_environment_yml, from_requirements_file
from codemonkeys.env.specs import EnvSpec, SpecRegistry, choose_python, read_overrides
from codemonkeys.errors import ConfigError, DataError, RepoError

CONDA = CondaMap(renames={"matplotlib-base": "matplotlib", "dask-core": "dask"}, skip=frozenset({"python", "pip", "hdf5"}))


def test_swebench_specs_come_through_with_their_repo_maps() -> None:
    spec = SpecRegistry().get("django/django", "3.0")
    assert spec.python == "3.6" and spec.packages == "requirements.txt"
    assert spec.requirements_paths == ["tests/requirements/py3.txt"]
    assert SpecRegistry().get("pydata/xarray", "2022.06").env_yml_paths[0] == "ci/requirements/environment.yml"


def test_xarray_gets_a_pydap_that_imports_on_its_python() -> None:
    spec = SpecRegistry.default().get("pydata/xarray", "2022.06")
    assert spec.pip_packages[0] == "numpy==1.23.0"  # swebench's pins stay
    assert spec.all_pip_packages[-1] == "pydap>=3.4"
    assert _plan(spec, []).pip_packages[-1] == "pydap>=3.4"


def test_overrides_merge_over_swebench_and_describe_unknown_repos(tmp_path: Path) -> None:
    registry = SpecRegistry([
        {"django/django": {"*": {"apt_packages": ["tzdata"]}, "3.0": {"python": "3.7"}}},
        {"acme/calc": {"0.1": {"python": "3.11", "test_cmd": "pytest -rA", "log_parser": "parse_log_pytest"}}},
    ])
    django = registry.get("django/django", "3.0")
    assert (django.python, django.apt_packages, django.packages) == ("3.7", ["tzdata"], "requirements.txt")
    assert registry.get("django/django", "3.1").apt_packages == ["tzdata"]
    assert registry.get("acme/calc", "0.1").log_parser == "parse_log_pytest"
    with pytest.raises(DataError, match="no environment spec for acme/calc version '9.9'"):
        registry.get("acme/calc", "9.9")
    with pytest.raises(DataError, match="invalid: test_cmd"):
        SpecRegistry([{"x/y": {"1": {"python": "3.9"}}}]).get("x/y", "1")
    path = tmp_path / "o.yaml"
    path.write_text("x/y:\n  '1': {python: '3.9', test_cmd: pytest}\n")
    assert SpecRegistry.default(files=[path]).get("x/y", "1").python == "3.9"
    path.write_text("x/y: [1, 2]\n")
    with pytest.raises(ConfigError, match="must map version -> fields"):
        read_overrides(path)


def test_choose_python_takes_the_minor_or_the_next_one() -> None:
    available = ["2.7.18", "3.6.15", "3.9.18", "3.9.2", "3.11.7"]
    assert choose_python("3.9", available) == "3.9.18"
    assert choose_python("3.5", available) == "3.6.15"
    assert choose_python("3.10", available) == "3.11.7"
    assert choose_python("3.9.2", available) == "3.9.2"
    with pytest.raises(DataError, match="no Python 3.12"):
        choose_python("3.12", available)


def test_conda_specs_become_pip_requirements() -> None:
    assert conda_to_pip("numpy=1.19", CONDA) == "numpy==1.19.*"
    assert conda_to_pip("numpy=1.19.2=py36_0", CONDA) == "numpy==1.19.2.*"
    assert conda_to_pip("conda-forge::scipy>=1.5", CONDA) == "scipy>=1.5"
    assert conda_to_pip("matplotlib-base", CONDA) == "matplotlib"
    assert conda_to_pip("pandas 1.3", CONDA) == "pandas==1.3.*"
    assert conda_to_pip("python=3.9", CONDA) is None
    assert conda_to_pip("  # comment", CONDA) is None


def test_environment_yml_maps_conda_and_keeps_pip() -> None:
    text = "name: x\nchannels: [conda-forge]\ndependencies:\n  - python=3.10\n  - dask-core\n  - hdf5\n  - fsspec!=2021.7.0\n  - pip\n  - pip:\n      - numbagg\n"
    assert from_environment_yml(text, CONDA) == ["dask", "fsspec!=2021.7.0", "numbagg"]


def test_requirement_files_follow_includes_and_drop_the_project() -> None:
    files = {
        "requirements/dev.txt": "-r tests.txt\n-e .\n# comment\nblack==22.1 # pinned\n--index-url https://x\n",
        "requirements/tests.txt": "pytest>=6\n.[test]\ntypes-pkg_resources==0.1\n",
    }

    def read(path: str) -> str:
        if path not in files:
            raise RepoError(path)
        return files[path]

    assert from_requirements_file("requirements/dev.txt", read) == ["pytest>=6", "types-setuptools", "black==22.1"]
    spec = EnvSpec(python="3.9", test_cmd="pytest", packages="requirements.txt", requirements_paths=["missing.txt", "requirements/dev.txt"])
    assert env_requirements(spec, read, CONDA) == ["pytest>=6", "types-setuptools", "black==22.1"]
    conda_list = EnvSpec(python="3.6", test_cmd="pytest", packages="numpy scipy python=3.6")
    assert env_requirements(conda_list, read, CONDA) == ["numpy", "scipy"]
    nowhere = EnvSpec(python="3.9", test_cmd="pytest", packages="requirements.txt", requirements_paths=["a.txt"])
    with pytest.raises(RepoError, match="none of a.txt"):
        env_requirements(nowhere, read, CONDA)


def test_shipped_conda_map_reads() -> None:
    shipped = CondaMap.shipped()
    assert shipped.renames["matplotlib-base"] == "matplotlib" and "python" in shipped.skip


def test_pre_install_splits_system_from_repo_steps() -> None:
    commands = [
        "apt-get update && apt-get install -y locales",
        "echo 'en_US UTF-8' > /etc/locale.gen",
        "locale-gen en_US.UTF-8",
        "sed -i 's/pytest/pytest -rA/' tox.ini",
    ]
    assert split_pre_install(commands) == (commands[:3], commands[3:])


@pytest.mark.parametrize(
    ("command", "targets"),
    [
        ("python -m pip install -e .[test]", ["/testbed[test]"]),
        ("python -m pip install -v --no-use-pep517 --no-build-isolation -e .", ["/testbed"]),
        ("python -m pip install .", ["/testbed"]),
        ("python setup.py install", ["/testbed"]),
        ("pip install -r requirements.txt", []),
        ("make install", []),
    ],
)
def test_install_targets(command: str, targets: list[str]) -> None:
    assert install_targets(command) == targets


def test_pip_config_keeps_only_network_indexes() -> None:
    text = (
        "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
        "global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'\n"
        "global.index-url='https://pypi.example/simple'\n"
    )
    settings = parse_pip_config(text)
    assert settings == IndexSettings("https://pypi.example/simple", ("https://mirror.example/simple",))
    assert settings.env()["UV_EXTRA_INDEX_URL"] == "https://mirror.example/simple"
    assert parse_pip_config("global.find-links='/opt/wheels'\n") == IndexSettings()


def _plan(spec: EnvSpec, requirements: list[str], cutoff: datetime | None = datetime(2020, 5, 1, tzinfo=UTC)):
    return plan_environment(
        repo="django/django", version="3.0", spec=spec, python="3.6.15", python_tag="cm/python:3.6.15-x",
        requirements=requirements, cutoff=cutoff, index=IndexSettings(), ladder=[1, 2],
        editable_compat=True, build_constraints=["setuptools<82"], recipe_digest="d", image_prefix="cm",
    )


def test_env_plans_share_keys_exactly_when_inputs_match() -> None:
    spec = SpecRegistry().get("django/django", "3.0")
    first, again = _plan(spec, ["pytz"]), _plan(spec, ["pytz"])
    assert first.key == again.key and first.tag == again.tag
    assert first.tag.startswith("cm/env.django__django-3.0:")
    assert first.installer_args == "--python /opt/venv/bin/python --cutoff 2020-05-01 --ladder-years 1,2"
    assert first.env_vars["PIP_CONFIG_SETTINGS"] == "editable_mode=compat"
    # Packages as of the commit, but never older than the spec's Python (3.6: 2016-12-23).
    old = _plan(spec, ["pytz"], cutoff=datetime(2013, 3, 1, tzinfo=UTC))
    assert old.cutoff == "2016-12-23" and "--cutoff 2016-12-23" in old.installer_args
    assert _plan(spec, ["pytz", "sqlparse"]).key != first.key
    assert _plan(spec, ["pytz"], cutoff=None).key != first.key
    one = plan_instance(instance_id="django__django-1", base_commit="a" * 40, spec=spec, env=first, recipe_digest="d", image_prefix="cm")
    two = plan_instance(instance_id="django__django-2", base_commit="b" * 40, spec=spec, env=first, recipe_digest="d", image_prefix="cm")
    assert one.env is two.env and one.key != two.key
    assert one.tag.startswith("cm/sweb.eval.x86_64.django__django-1:")
    assert one.deps_targets == ["/testbed"]
    swapped = spec.model_copy(update={"post_install": ["python /opt/codemonkeys/matplotlib_freetype.py /testbed"]})
    three = plan_instance(instance_id="django__django-1", base_commit="a" * 40, spec=swapped, env=first, recipe_digest="d", image_prefix="cm")
    assert three.post_install == swapped.post_install and three.key != one.key and three.env is one.env


def test_content_key_and_official_names() -> None:
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})
    assert official_image("swebench", "django__django-11099") == "swebench/sweb.eval.x86_64.django_1776_django-11099:latest"
