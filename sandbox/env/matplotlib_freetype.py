"""Give an installed matplotlib checkout the FreeType its test images were drawn with.

matplotlib's baseline images are rendered with FreeType 2.6.1, which its build
downloads from savannah.gnu.org; offline, the environment links Debian's
FreeType instead and about a tenth of the image comparisons fail whatever the
patch. matplotlib's release wheels on PyPI link 2.6.1 statically into
``ft2font``, so this swaps in the ``ft2font`` extension of the newest release
wheel of the checkout's own minor series (same CPython, same C++ source up to
patch releases), then checks it renders text and mathtext. Any failure keeps
the source-built module: the image still builds, and grading names FreeType
as the cause. The outcome is written to ``/opt/codemonkeys/freetype.json``.
The module is kept in ``/opt/codemonkeys/ft2font/``: grading re-runs this
after its re-install (which rebuilds ft2font from source), offline.

Run inside the instance build, after the install command, as
``python /opt/codemonkeys/matplotlib_freetype.py [TESTBED]``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

WANTED = "2.6.1"
REPORT = "/opt/codemonkeys/freetype.json"
KEPT = "/opt/codemonkeys/ft2font"
PROBE = (
    "import io, matplotlib; matplotlib.use('Agg'); import matplotlib.ft2font as f, matplotlib.pyplot as plt; "
    "fig = plt.figure(); fig.text(0.5, 0.5, 'Text $x^2$'); fig.savefig(io.BytesIO(), format='png'); "
    "print(f.__freetype_version__ + ' ' + f.__file__)"
)


def probe(cwd: str) -> tuple[str, str]:
    """``(FreeType version, ft2font path)`` of the importable matplotlib; raises when it cannot draw."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError((out.stderr.strip().splitlines() or ["probe failed"])[-1])
    version, path = out.stdout.strip().splitlines()[-1].split(" ", 1)
    return version, path


def series(testbed: str) -> tuple[int, int]:
    """The checkout's minor series: its latest release tag (``v3.6.0-343-g...`` -> 3.6)."""
    out = subprocess.run(["git", "describe", "--tags", "--match", "v[0-9]*"], cwd=testbed, capture_output=True, text=True)
    match = re.match(r"v(\d+)\.(\d+)", out.stdout.strip())
    if not match:
        raise RuntimeError(f"no release tag before the base commit ({out.stderr.strip() or out.stdout.strip()})")
    return int(match.group(1)), int(match.group(2))


def release_wheel(major: int, minor: int, dest: str) -> str:
    """Download the newest ``matplotlib`` wheel of the series for this interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PIP_NO_INDEX")}
    spec = f"matplotlib>={major}.{minor},<{major}.{minor + 1}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", dest, spec]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wheels = glob.glob(os.path.join(dest, "matplotlib-*.whl"))
    if out.returncode != 0 or not wheels:
        raise RuntimeError(f"no wheel for {spec}: {(out.stderr.strip().splitlines() or ['pip failed'])[-1]}")
    return wheels[0]


def kept_module(kept: str, wanted_name: str) -> tuple[str, str] | None:
    """``(path, wheel name)`` of the module kept by an earlier run, if any."""
    path = os.path.join(kept, wanted_name)
    source = os.path.join(kept, "source.txt")
    if os.path.isfile(path) and os.path.isfile(source):
        with open(source) as handle:
            return path, handle.read().strip()
    return None


def main(testbed: str, kept: str = KEPT) -> dict[str, str]:
    version, target = probe(testbed)
    if version == WANTED:
        return {"freetype": version, "source": "built"}
    backup = target + ".source-built"
    found = kept_module(kept, os.path.basename(target))
    if found is not None:
        shutil.copy2(target, backup)
        shutil.copyfile(found[0], target)
        wheel = found[1]
    else:
        wheel = fetch_module(testbed, target, backup)
    try:
        swapped, _ = probe(testbed)
        if swapped != WANTED:
            raise RuntimeError(f"the wheel's ft2font links FreeType {swapped}")
    except Exception:
        shutil.move(backup, target)
        raise
    os.remove(backup)
    if found is None:  # kept only once it has drawn
        os.makedirs(kept, exist_ok=True)
        shutil.copyfile(target, os.path.join(kept, os.path.basename(target)))
        with open(os.path.join(kept, "source.txt"), "w") as handle:
            handle.write(wheel + "\n")
    return {"freetype": swapped, "source": wheel, "replaced": version}


def fetch_module(testbed: str, target: str, backup: str) -> str:
    """Put the series wheel's ft2font at ``target`` (the built one at ``backup``); returns the wheel's name."""
    major, minor = series(testbed)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = release_wheel(major, minor, tmp)
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if re.fullmatch(r"matplotlib/ft2font\.[^/]*\.so", n)]
            if not names:
                raise RuntimeError(f"{os.path.basename(wheel)} has no ft2font extension")
            shutil.copy2(target, backup)
            with archive.open(names[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return os.path.basename(wheel)


if __name__ == "__main__":
    where = sys.argv[1] if len(sys.argv) > 1 else "/testbed"
    try:
        result = main(where)
    except Exception as exc:  # the build goes on with the source-built module; grading names the cause
        result = {"freetype": "unchanged", "error": f"{type(exc).__name__}: {exc}"}
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "w") as handle:
        json.dump(result, handle)
    print("matplotlib FreeType:", json.dumps(result))
