"""Bundled example instances: a SWE-bench row, its repository as a git bundle, its environment spec.

An example's repo is unknown to swebench, so it brings what a real instance
gets from elsewhere: ``repo.bundle`` stands in for GitHub (cloned into a
mirror directory, as ``environment.mirror_dir`` expects) and ``spec.json``
holds the spec fields that become an ``environment.spec_overrides`` entry.
Nothing here runs at import time; every helper is idempotent.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from ..errors import DataError, RepoError
from ..swebench.instances import Instance, parse_instances
from ..swebench.repo import repo_slug

DEFAULT_EXAMPLE = "humansize"


def example_dir(name: str = DEFAULT_EXAMPLE) -> Path:
    """The directory of a bundled example (``instance.json``, ``repo.bundle``, ``spec.json``)."""
    path = Path(__file__).resolve().parent / name
    if not (path / "instance.json").is_file():
        raise DataError(f"no bundled example named {name!r}")
    return path


def example_row(name: str = DEFAULT_EXAMPLE) -> dict[str, Any]:
    """The example's SWE-bench row, as in a dataset file."""
    return dict(json.loads((example_dir(name) / "instance.json").read_text(encoding="utf-8")))


def example_instance(name: str = DEFAULT_EXAMPLE) -> Instance:
    """The example as a validated :class:`Instance`."""
    (instance,) = parse_instances([example_row(name)], f"example {name}")
    return instance


def example_spec_overrides(name: str = DEFAULT_EXAMPLE) -> dict[str, dict[str, dict[str, Any]]]:
    """``repo -> version -> spec fields`` for the example, the shape of ``environment.spec_overrides``."""
    row = example_row(name)
    fields = json.loads((example_dir(name) / "spec.json").read_text(encoding="utf-8"))
    return {row["repo"]: {row["version"]: fields}}


def example_mirror(dest: Path, name: str = DEFAULT_EXAMPLE) -> Path:
    """Clone the example's bundle into ``dest/<owner>__<repo>`` (a bare mirror); returns that path.

    ``dest`` is then an ``environment.mirror_dir``. An existing mirror is kept.
    """
    target = dest / repo_slug(example_row(name)["repo"])
    if (target / "HEAD").is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=dest))
    try:
        git.Git().clone("--bare", "--quiet", str(example_dir(name) / "repo.bundle"), str(tmp / "repo.git"))
        (tmp / "repo.git").rename(target)
    except git.GitCommandError as exc:
        raise RepoError(f"cannot clone the bundle of example {name}: {exc.stderr.strip() or exc}") from exc
    except OSError:
        if not (target / "HEAD").is_file():  # another process won the race: fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(frozen=True)
class ExampleSetup:
    """What a run of the example needs: a dataset file, a mirror directory, config overrides."""

    dataset: Path
    mirror_dir: Path
    overrides: list[str]


def prepare_example(run_dir: Path, name: str = DEFAULT_EXAMPLE) -> ExampleSetup:
    """Write the example's dataset and mirror under ``run_dir/example`` and the overrides that point at them."""
    base = Path(run_dir).resolve() / "example"
    mirrors = base / "mirrors"
    example_mirror(mirrors, name)
    dataset = base / f"{name}.jsonl"
    dataset.write_text(json.dumps(example_row(name)) + "\n", encoding="utf-8")
    overrides = [
        f"environment.mirror_dir={mirrors}",
        f"environment.spec_overrides={json.dumps(example_spec_overrides(name))}",
    ]
    return ExampleSetup(dataset=dataset, mirror_dir=mirrors, overrides=overrides)


EXAMPLE_DATASET = "example"


def resolve_dataset(dataset: str, workdir: Path | None = None) -> tuple[str, list[str]]:
    """``--dataset example`` means the bundled instance: its dataset file and the config overrides it needs.

    Any other value is returned as is, with no overrides. ``workdir`` holds the
    example's files (default: the user cache), so every command can take it.
    """
    if dataset != EXAMPLE_DATASET:
        return dataset, []
    setup = prepare_example(workdir or Path.home() / ".cache" / "codemonkeys")
    return str(setup.dataset), list(setup.overrides)
