"""Building many instance images at once: shared layers once, repo versions in parallel.

Instances are grouped by repo version (one env layer each). The shared
layers (builder, one Python layer per CPython version) are built first, one
at a time, so parallel workers never build the same layer twice; then
``jobs`` workers each take a whole group, its env layer then its instances in
order, each worker with an :class:`~.images.ImageBuilder` of its own.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..config import EnvironmentConfig
from ..swebench.instances import Instance
from .images import BuiltImage, ImageBuilder, available_pythons
from .specs import choose_python

log = logging.getLogger(__name__)

OnDone = Callable[[Instance, "BuiltImage | BaseException"], None]


def group_by_env(instances: Sequence[Instance]) -> list[list[Instance]]:
    """Instances grouped by (repo, version), groups in first-seen order, biggest groups first."""
    groups: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for instance in instances:
        groups[(instance.repo, instance.version)].append(instance)
    return sorted(groups.values(), key=lambda group: -len(group))


def build_many(
    config: EnvironmentConfig,
    instances: Sequence[Instance],
    *,
    jobs: int,
    on_done: OnDone,
    progress: Callable[[str], None] | None = None,
    make_builder: Callable[[], ImageBuilder] | None = None,
) -> None:
    """Pull or build every instance's image; ``on_done`` gets each image or the exception that stopped it."""
    if jobs < 1:
        raise ValueError("--jobs must be at least 1")
    new_builder = make_builder or (lambda: ImageBuilder(config, progress=progress))
    groups = group_by_env(instances)
    shared = new_builder()
    pythons = list(available_pythons(shared._pyenv_root()))
    failed_groups: dict[int, BaseException] = {}
    if not config.pull_official:
        versions: dict[str, list[int]] = defaultdict(list)
        for index, group in enumerate(groups):
            try:
                spec = shared.registry.get(group[0].repo, group[0].version)
                versions[choose_python(spec.python, pythons)].append(index)
            except Exception as exc:  # noqa: BLE001 - the group's instances report it
                failed_groups[index] = exc
        for version, members in sorted(versions.items()):
            try:
                shared.python_tag(version)
            except Exception as exc:  # noqa: BLE001 - the group's instances report it
                for index in members:
                    failed_groups[index] = exc

    def work(index: int) -> None:
        group = groups[index]
        if index in failed_groups:
            for instance in group:
                on_done(instance, failed_groups[index])
            return
        builder = new_builder()
        for instance in group:
            try:
                on_done(instance, builder.ensure_instance(instance))
            except Exception as exc:  # noqa: BLE001 - the instance boundary
                on_done(instance, exc)

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cm-env-build") as pool:
        for future in [pool.submit(work, index) for index in range(len(groups))]:
            future.result()
