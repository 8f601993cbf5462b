"""Install requirements into an environment image, as of a date, tolerating bad apples.

Runs inside image builds with the environment's own Python (3.6 and up, so no
newer syntax here). Resolution goes through ``uv pip`` with
``--exclude-newer``: an old checkout gets the package versions of its day
(Sphinx 3.x breaks with docutils >= 0.18, which came later). Exact pins
(``name==x.y``) are exempt from the cut-off, because swebench's specs pin
versions newer than some environment commits. When the cut-off makes a set
unsatisfiable, it is moved later step by step, then dropped. The versions
resolved as of the date are then installed with no cut-off, so a wheel of the
same version uploaded later is preferred over a source build; packages still
built from source are listed in ``SOURCE_BUILDS``. When a set fails
to build, its requirements are installed one at a time and the failures are
listed in ``FAILED_LOG`` instead of sinking the rest.

Modes:
  install FILE       install the requirements in FILE (--reinstall: even over newer versions)
  deps TARGET...     install the dependencies of TARGET (e.g. ``/testbed[test]``)
                     as of the date, preferring what is already installed, but
                     not TARGET itself: its own install command builds it once.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile

FAILED_LOG = "/opt/codemonkeys/failed-requirements.txt"
FAR_FUTURE = "2100-01-01T00:00:00Z"
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*===?\s*([^\s;,*]+)\s*(;.*)?$")
UNSATISFIABLE = ("No solution found", "unsatisfiable", "not satisfiable")


def log(message):
    sys.stdout.write("[install_requirements] " + message + "\n")
    sys.stdout.flush()


def ladder(cutoff, steps):
    """Cut-off dates to try, in order; None means no cut-off."""
    if not cutoff:
        return [None]
    start = datetime.datetime.strptime(cutoff[:10], "%Y-%m-%d")
    dates = [start + datetime.timedelta(days=365 * years) for years in [0] + steps]
    return [d.strftime("%Y-%m-%dT00:00:00Z") for d in dates if d < datetime.datetime.utcnow()] + [None]


def pinned_names(lines):
    names = []
    for line in lines:
        match = PIN.match(line)
        if match:
            names.append(match.group(1))
    return names


def uv(args, python, cutoff, exempt, extra_index, reinstall=False):
    command = ["uv", "pip"] + args[:1] + ["--python", python] + args[1:]
    if reinstall:
        command.append("--reinstall")
    if cutoff:
        command += ["--exclude-newer", cutoff]
        for name in exempt:
            command += ["--exclude-newer-package", name + "=" + FAR_FUTURE]
    for url in extra_index:
        command += ["--extra-index-url", url]
    log("$ " + " ".join(command))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    output, _ = proc.communicate()
    sys.stdout.write(output)
    sys.stdout.flush()
    return proc.returncode, output


# uv's words for a package none of whose releases is older than the cut-off (codecov's
# were all deleted from PyPI in 2023): no date makes the set satisfiable.
VANISHED = re.compile(r"there (?:are|is) no versions of ([A-Za-z0-9][A-Za-z0-9._-]*)")


# Packages whose old releases PyPI no longer serves (their authors deleted them; one later
# release was put back). A resolver under a cut-off does not fail on them when they are a
# dependency: it quietly backtracks to whatever did not need them (pytest 3.5.1, which
# predates atomicwrites, for every "pytest" as of 2018-2021). So they never get the cut-off.
LOST_HISTORY = ("atomicwrites", "codecov")


def vanished(output):
    """Packages the resolver found no release of before the cut-off."""
    return sorted(set(VANISHED.findall(output)))


def install_set(lines, python, dates, extra_index, reinstall=False):
    """Try the whole set under each cut-off; returns (ok, built_but_failed).

    A package with no release before a cut-off is exempted from it (a release
    of any date will do), and the same cut-off is tried again for the rest.
    """
    handle = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    handle.write("\n".join(lines) + "\n")
    handle.close()
    try:
        for cutoff in dates:
            exempt = pinned_names(lines) + list(LOST_HISTORY)
            for _ in range(len(lines) + 1):  # each retry exempts one more package at least
                if cutoff and later_wheels(handle.name, python, cutoff, exempt, extra_index, reinstall):
                    return True, False
                code, output = uv(["install", "-r", handle.name], python, cutoff, exempt, extra_index, reinstall)
                note_source_builds(output)
                if code == 0:
                    return True, False
                gone = [name for name in vanished(output) if name not in exempt] if cutoff else []
                if not gone:
                    break
                log("no release before " + cutoff + " of " + ", ".join(gone) + ": exempt from the cut-off")
                exempt = exempt + gone
            if not any(marker in output for marker in UNSATISFIABLE):
                return False, True
        return False, False
    finally:
        os.unlink(handle.name)


def later_wheels(path, python, cutoff, exempt, extra_index, reinstall):
    """Resolve as of the cut-off, then install those exact versions with no cut-off.

    Same versions, so the same code; but a wheel of a version uploaded after
    the cut-off (old releases often got wheels for newer Pythons later) is now
    eligible, and uv prefers it to building the sdist. False: not done (the
    caller installs as of the cut-off, as before).
    """
    pins = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    pins.close()
    try:
        code, output = uv(["compile", path, "-o", pins.name, "--no-header", "--no-annotate", "--quiet"],
                          python, cutoff, exempt, extra_index)
        if code != 0:
            return False
        code, output = uv(["install", "-r", pins.name], python, None, [], extra_index, reinstall)
        note_source_builds(output)
        return code == 0
    finally:
        os.unlink(pins.name)


SOURCE_BUILDS = "/opt/codemonkeys/source-builds.txt"
BUILT = re.compile(r"^\s*Built (\S+)", re.M)


def append_lines(path, lines, what):
    """Add ``lines`` to the record at ``path`` (one per line) and log them as ``what``."""
    if not lines:
        return
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with open(path, "a") as handle:
        for line in lines:
            handle.write(line + "\n")
    log(what + ": " + ", ".join(lines))


def note_source_builds(output):
    """Record the packages built from source (slow on 2 cores), one per line in SOURCE_BUILDS."""
    append_lines(SOURCE_BUILDS, BUILT.findall(output), "built from source")


def record_failures(failed):
    append_lines(FAILED_LOG, failed, "could not install")


def install(lines, python, dates, extra_index, reinstall=False):
    lines = [line for line in lines if line.strip() and not line.strip().startswith("#")]
    if not lines:
        return
    ok, _ = install_set(lines, python, dates, extra_index, reinstall)
    if ok:
        return
    log("installing one requirement at a time")
    failed = []
    for line in lines:
        ok, _ = install_set([line], python, dates, extra_index, reinstall)
        if not ok:
            failed.append(line.strip())
    record_failures(failed)


def installed(python):
    output = subprocess.check_output([python, "-m", "pip", "freeze", "--all"], universal_newlines=True)
    return [line for line in output.splitlines() if PIN.match(line)]


def deps(targets, python, dates, extra_index):
    """Resolve TARGETs as of the date, preferring installed versions, and install all but TARGETs."""
    prefs = installed(python)
    workdir = tempfile.mkdtemp()
    inputs = os.path.join(workdir, "in.txt")
    output_file = os.path.join(workdir, "out.txt")
    with open(inputs, "w") as handle:
        handle.write("\n".join(("-e " + t) if not t.startswith("-e ") else t for t in targets) + "\n")
    for cutoff in dates:
        # An existing output file holds preferred versions: keep what is installed when it fits.
        with open(output_file, "w") as handle:
            handle.write("\n".join(prefs) + "\n")
        code, output = uv(
            ["compile", inputs, "-o", output_file, "--no-header", "--no-annotate"],
            python, cutoff, pinned_names(prefs) + list(LOST_HISTORY), extra_index,
        )
        if code == 0:
            break
        if not any(marker in output for marker in UNSATISFIABLE):
            log("cannot resolve the dependencies of " + " ".join(targets) + "; leaving them to the install command")
            return
    else:
        log("the dependencies of " + " ".join(targets) + " are unsatisfiable at every cut-off")
        return
    with open(output_file) as handle:
        pins = [line.strip() for line in handle if PIN.match(line)]
    install(pins, python, [None], extra_index)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["install", "deps"])
    parser.add_argument("items", nargs="+")
    parser.add_argument("--python", required=True)
    parser.add_argument("--cutoff", default="")
    parser.add_argument("--ladder-years", default="1,2,3")
    parser.add_argument("--extra-index-url", action="append", default=[])
    parser.add_argument("--reinstall", action="store_true", help="install the versions of the date even over newer ones")
    args = parser.parse_args()
    steps = [int(s) for s in args.ladder_years.split(",") if s.strip()]
    dates = ladder(args.cutoff, steps)
    if args.mode == "install":
        lines = []
        for path in args.items:
            with open(path) as handle:
                lines += handle.read().splitlines()
        install(lines, args.python, dates, args.extra_index_url, args.reinstall)
    else:
        deps(args.items, args.python, dates, args.extra_index_url)


if __name__ == "__main__":
    main()
