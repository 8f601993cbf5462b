"""Base image recipe and mirror discovery (pure parts; the build itself runs in setup)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemonkeys.errors import BuildError
from codemonkeys.sandbox.baseimage import find_apt_mirror, load_recipe
from codemonkeys.sandbox.session import parse_start_time

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_sources() -> None:
    assert (
        find_apt_mirror({"/etc/apt/sources.list.d/debian.sources": DEB822}, "bookworm")
        == "http://mirror.example/debian"
    )


def test_mirror_from_one_line_sources_skips_other_suites_and_deb_src() -> None:
    text = (
        "# comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://sec.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n"
    )
    assert (
        find_apt_mirror({"/etc/apt/sources.list": text}, "bookworm") == "http://one.example/debian"
    )


def test_disabled_stanzas_and_missing_suites() -> None:
    disabled = "Enabled: no\n" + DEB822.split("\n\n")[0]
    with pytest.raises(BuildError):
        find_apt_mirror({"x.sources": disabled}, "bookworm")
    with pytest.raises(BuildError):
        find_apt_mirror({"x.sources": DEB822}, "trixie")


def _write_recipe(folder: Path, packages: str) -> None:
    (folder / "base" / "rootfs" / "etc").mkdir(parents=True, exist_ok=True)
    (folder / "base" / "recipe.toml").write_text(
        f'suite = "bookworm"\npackages = [{packages}]\n[env]\nLANG = "C.UTF-8"\n'
    )
    (folder / "base" / "rootfs" / "etc" / "gitconfig").write_text("[user]\n")


def test_recipe_digest_follows_the_recipe_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("cert")
    _write_recipe(tmp_path, '"git"')
    first = load_recipe(recipes=tmp_path, ca_bundle=ca)
    assert first.tag.startswith("codemonkeys/base:bookworm-")
    assert first.packages == ("git",) and first.env == (("LANG", "C.UTF-8"),)
    assert load_recipe(recipes=tmp_path, ca_bundle=ca).digest == first.digest
    (tmp_path / "base" / "rootfs" / "etc" / "gitconfig").write_text("[user]\nname = x\n")
    second = load_recipe(recipes=tmp_path, ca_bundle=ca)
    assert second.digest != first.digest
    ca.write_text("another cert")
    assert load_recipe(recipes=tmp_path, ca_bundle=ca).digest != second.digest


def test_recipe_refuses_odd_package_names(tmp_path: Path) -> None:
    _write_recipe(tmp_path, '"git; rm -rf /"')
    with pytest.raises(BuildError):
        load_recipe(recipes=tmp_path)
    with pytest.raises(BuildError):
        load_recipe("missing", recipes=tmp_path)


def test_shipped_recipe_has_what_sandboxes_and_pyenv_pythons_need() -> None:
    recipe = load_recipe()
    for package in (
        "git",
        "patch",
        "ca-certificates",
        "libssl3",
        "libffi8",
        "zlib1g",
        "libsqlite3-0",
        "tzdata",
    ):
        assert package in recipe.packages


def test_process_start_time_survives_odd_command_names() -> None:
    stat = (
        "1234 (we ird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10"
    )
    assert parse_start_time(stat) == "987654"
