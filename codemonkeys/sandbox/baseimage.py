"""Build the sandbox base image without Docker Hub: debootstrap + docker import.

Docker Hub is unreachable where this runs, but the Debian mirror that apt
already uses is not. So the base image is a ``debootstrap --variant=minbase``
tree of the recipe's packages, imported as ``codemonkeys/<recipe>:<suite>-<digest>``.
The digest covers the recipe, so a changed recipe gets a new tag and a built
tag is never rebuilt (``ensure_*`` return at once when the tag exists).

Run ``python -m codemonkeys.sandbox.baseimage [--test]`` to build by hand.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BuildError
from ..resources import resource_dir

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

# Bump when the build steps below change in a way the recipe files do not show.
BUILD_FORMAT = "1"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LABEL = "codemonkeys.recipe"
# Interpreter parts the test image leaves out: big and never used by tests.
_PYTHON_SKIP = {"site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip"}


@dataclass(frozen=True, slots=True)
class Recipe:
    """A parsed ``sandbox/<name>/recipe.toml`` plus its overlay files."""

    name: str
    suite: str
    variant: str
    packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    overlay: Path | None
    digest: str

    @property
    def tag(self) -> str:
        return f"codemonkeys/{self.name}:{self.suite}-{self.digest[:12]}"


def _hash_tree(digest: hashlib._Hash, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")


def load_recipe(
    name: str = "base", *, recipes: Path | None = None, ca_bundle: Path = HOST_CA_BUNDLE
) -> Recipe:
    """Read a recipe from the shipped ``sandbox/`` directory (or ``recipes``)."""
    folder = (recipes or resource_dir("sandbox")) / name
    recipe_file = folder / "recipe.toml"
    try:
        raw = recipe_file.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read image recipe {recipe_file}: {exc}") from exc
    digest = hashlib.sha256(f"format={BUILD_FORMAT}\0".encode() + raw + b"\0")
    overlay = folder / "rootfs"
    if overlay.is_dir():
        _hash_tree(digest, overlay)
    if ca_bundle.is_file():
        digest.update(ca_bundle.read_bytes())
    packages = tuple(str(p) for p in data.get("packages", []))
    if any(not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", p) for p in packages):
        raise BuildError(f"recipe {recipe_file} names an invalid Debian package: {packages}")
    return Recipe(
        name=name,
        suite=str(data.get("suite", "bookworm")),
        variant=str(data.get("variant", "minbase")),
        packages=packages,
        env=tuple((str(k), str(v)) for k, v in dict(data.get("env", {})).items()),
        overlay=overlay if overlay.is_dir() else None,
        digest=digest.hexdigest(),
    )


# --- which mirror -----------------------------------------------------------


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    stanza: dict[str, str] = {}
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza = {}
            continue
        key, sep, value = line.partition(":")
        if sep and not line[0].isspace():
            stanza[key.strip().lower()] = value.strip()
    return


def find_apt_mirror(sources: Mapping[str, str], suite: str) -> str:
    """The first ``deb`` URI serving ``suite``'s main component, from apt source files.

    ``sources`` maps file names to their text (``*.list`` one-line style or
    ``*.sources`` deb822 style). Pure, so it is tested without touching /etc.
    """
    for name, text in sources.items():
        if name.endswith(".sources"):
            for stanza in _deb822_stanzas(text):
                if stanza.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in stanza.get("types", "").split():
                    continue
                if (
                    suite in stanza.get("suites", "").split()
                    and "main" in stanza.get("components", "").split()
                ):
                    return stanza.get("uris", "").split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if (
                    len(words) >= 4
                    and words[0] == "deb"
                    and words[2] == suite
                    and "main" in words[3:]
                ):
                    return words[1]
    raise BuildError(f"no apt source for Debian {suite!r} (main) found in {sorted(sources)}")


def read_apt_sources(etc_apt: Path = Path("/etc/apt")) -> dict[str, str]:
    """The text of sources.list and every enabled file in sources.list.d."""
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*"))]
    return {
        str(path): path.read_text(encoding="utf-8", errors="replace")
        for path in files
        if path.is_file() and path.suffix in (".list", ".sources")
    }


# --- building ---------------------------------------------------------------


def _client(client: docker.DockerClient | None) -> docker.DockerClient:
    if client is not None:
        return client
    import docker as docker_sdk

    try:
        return docker_sdk.from_env()
    except docker_sdk.errors.DockerException as exc:
        raise BuildError(f"no Docker daemon to build images with: {exc}") from exc


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    import docker as docker_sdk

    try:
        client.images.get(tag)
    except docker_sdk.errors.ImageNotFound:
        return False
    return True


@contextmanager
def _build_lock(tag: str) -> Iterator[None]:
    """Two processes asking for the same tag build it once."""
    lock_path = (
        Path(tempfile.gettempdir()) / f"codemonkeys-image-{re.sub(r'[^A-Za-z0-9]', '_', tag)}.lock"
    )
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace")[-4000:]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {tail}")


def ensure_base_image(
    client: docker.DockerClient | None = None,
    *,
    recipe: str = "base",
    mirror: str | None = None,
    work_dir: Path | None = None,
    recipes: Path | None = None,
) -> str:
    """Build the recipe's image unless its tag exists; return the tag.

    Blocking (minutes on the first call, milliseconds after): call it from a
    thread in async code. Needs root for debootstrap.
    """
    client = _client(client)
    spec = load_recipe(recipe, recipes=recipes)
    if image_exists(client, spec.tag):
        return spec.tag
    with _build_lock(spec.tag):
        if image_exists(client, spec.tag):
            return spec.tag
        if os.geteuid() != 0:
            raise BuildError("building the base image runs debootstrap, which needs root")
        if shutil.which("debootstrap") is None:
            raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
        mirror = mirror or find_apt_mirror(read_apt_sources(), spec.suite)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="codemonkeys-rootfs-", dir=work_dir) as tmp:
            rootfs = Path(tmp) / "rootfs"
            log.info(
                "debootstrap %s (%s) from %s into %s", spec.suite, spec.variant, mirror, rootfs
            )
            _run(
                [
                    "debootstrap",
                    f"--variant={spec.variant}",
                    f"--include={','.join(spec.packages)}",
                    spec.suite,
                    str(rootfs),
                    mirror,
                ],
                "debootstrap",
            )
            if spec.overlay is not None:
                shutil.copytree(spec.overlay, rootfs, dirs_exist_ok=True, symlinks=True)
            if HOST_CA_BUNDLE.is_file():
                target = rootfs / HOST_CA_BUNDLE.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                shutil.copyfile(HOST_CA_BUNDLE, target)
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in (rootfs / junk).glob("*"):
                    if entry.is_file():
                        entry.unlink()
            tarball = Path(tmp) / "rootfs.tar"
            _run(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."],
                "tar",
            )
            repository, tag = spec.tag.split(":")
            changes = [f"ENV {key}={value}" for key, value in spec.env]
            changes += ['CMD ["/bin/bash"]', f"LABEL {LABEL}={spec.digest}"]
            try:
                client.api.import_image_from_file(
                    str(tarball), repository=repository, tag=tag, changes=changes
                )
            except Exception as exc:  # the SDK raises several unrelated types here
                raise BuildError(f"docker import of {spec.tag} failed: {exc}") from exc
        if not image_exists(client, spec.tag):
            raise BuildError(f"docker import reported success but {spec.tag} is missing")
        log.info("built %s in %.0f s", spec.tag, time.monotonic() - started)
        return spec.tag


def _default_python_prefix() -> Path:
    prefix = Path(sys.base_prefix).resolve()
    if prefix in (Path("/usr"), Path("/usr/local")):
        raise BuildError(
            f"the running Python lives in {prefix}; pass a self-contained prefix (a pyenv version)"
        )
    return prefix


def _python_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # Returning None for a directory also skips everything below it.
    if info.isdir() and Path(info.name).name in _PYTHON_SKIP:
        return None
    return info


def ensure_test_image(
    client: docker.DockerClient | None = None,
    *,
    python_prefix: Path | None = None,
    base_tag: str | None = None,
) -> str:
    """The small image tests and benches use: base + one pyenv CPython; returns its tag."""
    client = _client(client)
    base_tag = base_tag or ensure_base_image(client)
    prefix = (python_prefix or _default_python_prefix()).resolve()
    if not (prefix / "bin").is_dir():
        raise BuildError(f"{prefix} is not a Python installation prefix (no bin/)")
    folder = resource_dir("sandbox") / "test"
    dockerfile = (folder / "Dockerfile").read_bytes()
    key = hashlib.sha256(
        f"{BUILD_FORMAT}\0{base_tag}\0{prefix}\0".encode() + dockerfile
    ).hexdigest()
    tag = f"codemonkeys/test:{prefix.name}-{key[:12]}"
    if image_exists(client, tag):
        return tag
    with _build_lock(tag), tempfile.TemporaryDirectory(prefix="codemonkeys-ctx-") as tmp:
        if image_exists(client, tag):
            return tag
        started = time.monotonic()
        context = Path(tmp) / "context.tar"
        with tarfile.open(context, "w") as tar:
            tar.add(folder / "Dockerfile", arcname="Dockerfile")
            tar.add(prefix, arcname="python", filter=_python_filter)
        with open(context, "rb") as fileobj:
            try:
                client.images.build(
                    fileobj=fileobj,
                    custom_context=True,
                    tag=tag,
                    buildargs={"BASE": base_tag, "PYTHON_PREFIX": str(prefix)},
                    rm=True,
                    forcerm=True,
                    labels={LABEL: key},
                )
            except Exception as exc:  # BuildError/APIError from the SDK
                raise BuildError(f"building {tag} failed: {exc}") from exc
        log.info("built %s in %.0f s", tag, time.monotonic() - started)
        return tag


def main(argv: list[str] | None = None) -> int:
    """Build the base (and with ``--test`` the test) image and print the tags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="base")
    parser.add_argument("--test", action="store_true", help="also build the small test image")
    parser.add_argument("--python-prefix", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    base = ensure_base_image(recipe=args.recipe)
    print(f"{base}\t{time.monotonic() - started:.1f}s")
    if args.test:
        started = time.monotonic()
        print(
            f"{ensure_test_image(python_prefix=args.python_prefix, base_tag=base)}\t{time.monotonic() - started:.1f}s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
