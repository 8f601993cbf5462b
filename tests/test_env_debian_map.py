"""conda_to_debian.yaml: every mapped Debian package exists, and specs get the packages their conda deps need."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from codemonkeys.env.requirements import CondaMap, debian_packages, with_system_libraries
from codemonkeys.env.specs import EnvSpec

MAP = CondaMap.shipped().debian


def _apt_knows(package: str) -> bool | None:
    if shutil.which("apt-cache") is None:
        return None
    proc = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, timeout=60, check=False)
    if "Candidate:" not in proc.stdout:
        return False
    return "Candidate: (none)" not in proc.stdout


@pytest.mark.parametrize("conda_name", sorted(MAP))
def test_each_mapping_names_real_debian_packages(conda_name: str) -> None:
    assert MAP[conda_name], f"{conda_name} maps to nothing"
    if _apt_knows("bash") is not True:
        pytest.skip("apt has no package lists here (apt-get update)")
    missing = [p for p in MAP[conda_name] if not _apt_knows(p)]
    assert not missing, f"{conda_name}: apt knows no {missing}"


def test_the_c_libraries_of_conda_packages_become_apt_packages() -> None:
    yml = "name: testbed\ndependencies:\n  - python=3.10\n  - cfgrib\n  - netcdf4\n  - eccodes>=2.20\n  - pip:\n    - pytest\n"
    spec = EnvSpec(python="3.10", test_cmd="pytest", packages="environment.yml", env_yml_paths=["ci/env.yml"])
    got = debian_packages(spec, lambda path: yml, CondaMap.shipped())
    assert got == ["libeccodes0", "libeccodes-dev"]  # cfgrib's and eccodes', once each; netcdf4 has wheels
    listed = EnvSpec(python="3.9", test_cmd="pytest", packages="numpy gdal=3.1 python-graphviz")
    assert debian_packages(listed, lambda path: "", CondaMap.shipped()) == ["libgdal-dev", "gdal-bin", "graphviz"]
    assert debian_packages(EnvSpec(python="3.9", test_cmd="pytest", packages="requirements.txt"), lambda p: "", CondaMap.shipped()) == []


def test_a_spec_gets_each_library_package_once() -> None:
    spec = EnvSpec(python="3.9", test_cmd="pytest", packages="gdal python-graphviz", apt_packages=["graphviz"])
    assert with_system_libraries(spec, lambda path: "", CondaMap.shipped()).apt_packages == ["graphviz", "libgdal-dev", "gdal-bin"]
    plain = EnvSpec(python="3.9", test_cmd="pytest", packages="numpy")
    assert with_system_libraries(plain, lambda path: "", CondaMap.shipped()) is plain
