"""Keep the wheels a re-install of /testbed needs to build, for grading without an index.

Grading re-runs the spec's install command, as the harness does. Its sandbox
is offline, and pip's isolated build wants the project's build requirements
(``[build-system] requires``, else setuptools and wheel) from an index, so
the re-install failed and the tests ran on the build from image time: a patch
to a C or Cython source was never compiled. Run at build time, this downloads
those requirements (and theirs) into a wheelhouse that grading's
``PIP_FIND_LINKS`` points at.

    python /opt/codemonkeys/wheelhouse.py /testbed /opt/codemonkeys/wheelhouse

A failure is printed and the build goes on: grading then falls back to what
the image has installed, as before.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

# What pip builds a project without [build-system] with (its legacy fallback).
DEFAULT_REQUIRES = ["setuptools>=40.8.0", "wheel"]


def _load_toml(text: str) -> dict:
    for name in ("tomllib", "pip._vendor.tomli", "tomli", "pip._vendor.toml"):
        try:
            module = __import__(name, fromlist=["loads"])
        except ImportError:
            continue
        return module.loads(text)
    raise RuntimeError("no TOML parser in this Python")


def build_requires(testbed: str) -> list[str]:
    """The project's build requirements, as pip's isolated build would install them."""
    path = os.path.join(testbed, "pyproject.toml")
    if not os.path.isfile(path):
        return list(DEFAULT_REQUIRES)
    with open(path, encoding="utf-8") as handle:
        data = _load_toml(handle.read())
    system = data.get("build-system") or {}
    requires = system.get("requires")
    if requires is None:
        return list(DEFAULT_REQUIRES)
    return [str(r) for r in requires if str(r).strip()]


def main(testbed: str, dest: str) -> int:
    requires = build_requires(testbed)
    os.makedirs(dest, exist_ok=True)
    if not requires:
        return 0
    cmd = [sys.executable, "-m", "pip", "download", "--dest", dest, *requires]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError((out.stderr.strip().splitlines() or ["pip download failed"])[-1])
    return len([n for n in os.listdir(dest) if re.search(r"\.(whl|tar\.gz|zip)$", n)])


if __name__ == "__main__":
    where, into = (sys.argv[1:3] + ["/testbed", "/opt/codemonkeys/wheelhouse"][len(sys.argv[1:3]):])
    try:
        count = main(where, into)
        print(f"wheelhouse: {count} file(s) in {into} for re-installs without an index")
    except Exception as exc:  # the image still builds; grading then uses what is installed
        print(f"wheelhouse: not made ({type(exc).__name__}: {exc})")
