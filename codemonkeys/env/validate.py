"""Grade patches of many instances: build or find each image, run the eval script in a sandbox.

Used by ``env validate`` (gold patches) and ``evaluate`` (predictions). The
report is a JSON object keyed by instance id, rewritten after every instance,
so an interrupted run resumes where it stopped: instances already graded
``resolved``/``unresolved`` are skipped, ``error`` ones are tried again.
Build failures and timeouts are ``error`` (our infrastructure), never
``unresolved`` (the patch's fault). Eval logs are kept beside the report
(``<report>.logs/<instance_id>.eval.log``). Hunks of a patch that equal the
image's own setup commit are dropped before it is applied
(:mod:`.setup_hunks`) and listed in the entry's ``setup_hunks_dropped``: the
official harness's images did not always commit their setup, so patches made
there carry it, and our committed setup would make them not apply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from ..config import SandboxConfig
from ..errors import CodeMonkeysError, EditApplyError, failure_kind
from ..sandbox.base import EnvironmentRef, SandboxFactory
from ..swebench.instances import Instance
from .grading import GradeReport, eval_script, report_from_output
from .setup_hunks import drop_setup_hunks, setup_commit_diff
from .specs import EnvSpec, SpecRegistry

log = logging.getLogger(__name__)

EVAL_SCRIPT = "/tmp/codemonkeys_eval.sh"
EVAL_OUTPUT = "/tmp/codemonkeys_eval_output.txt"
FINAL = ("resolved", "unresolved")


FactoryForCpus = Callable[[float], SandboxFactory]


class ImageSource(Protocol):
    """What grading needs from the image builder (a protocol so tests can hand in a fixed image)."""

    def ensure_instance(self, instance: Instance) -> Any: ...


TIMED_OUT = "tests timed out"


async def grade_patch(
    factory: SandboxFactory,
    ref: EnvironmentRef,
    instance: Instance,
    spec: EnvSpec,
    patch: str,
    *,
    timeout_s: float,
    log_path: Path | None = None,
    reinstall: str = "always",
    network: bool = False,
) -> GradeReport:
    """Apply ``patch`` in a fresh sandbox, run the eval script, grade its output.

    The full output goes to a file in the sandbox and is read back, so the
    sandbox's output truncation never cuts test results out; with
    ``log_path`` it is kept there too.
    """
    if not patch.strip():
        return GradeReport(instance.instance_id, "unresolved", "empty patch", patch_applied=False)
    async with factory.sandbox(ref) as sandbox:
        dropped = drop_setup_hunks(patch, await setup_commit_diff(sandbox, instance.base_commit))
        if dropped.count:
            log.warning("%s: dropped %d hunks equal to the image's setup commit: %s", instance.instance_id, dropped.count, dropped.dropped)
            patch = dropped.patch
        try:
            if patch.strip():
                await sandbox.apply_patch(patch)
        except EditApplyError as exc:
            return GradeReport(
                instance.instance_id, "unresolved", f"patch does not apply: {str(exc)[:500]}", patch_applied=False,
                setup_hunks_dropped=dropped.dropped,
            )
        await sandbox.write_file(EVAL_SCRIPT, eval_script(instance, spec, patch=patch, reinstall=reinstall, network=network))
        started = time.monotonic()
        result = await sandbox.exec(
            ["bash", "-c", f"bash {EVAL_SCRIPT} > {EVAL_OUTPUT} 2>&1"], timeout_s=timeout_s
        )
        elapsed = time.monotonic() - started
        if result.timed_out:
            # As the harness: a run that never finishes is graded unresolved (the patch's outcome, not infra).
            return GradeReport(
                instance.instance_id, "unresolved", f"{TIMED_OUT} after {timeout_s:.0f} s", test_s=elapsed,
                setup_hunks_dropped=dropped.dropped,
            )
        output = await sandbox.read_file(EVAL_OUTPUT)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(output, encoding="utf-8")
    return replace(report_from_output(instance, spec, output, test_s=elapsed), setup_hunks_dropped=dropped.dropped)


def cpu_factories(config: SandboxConfig, *, network: bool = False) -> FactoryForCpus:
    """Sandbox factories with at least ``cpus`` CPUs, each made once (for ``grade_instances``)."""
    made: dict[float, SandboxFactory] = {}

    def factory_for(cpus: float) -> SandboxFactory:
        cpus = max(cpus, config.cpus)
        if cpus not in made:
            from ..sandbox.factory import make_sandbox_factory

            made[cpus] = make_sandbox_factory(config.model_copy(update={"cpus": cpus}), network=network)
        return made[cpus]

    return factory_for


def load_report(path: Path) -> dict[str, dict[str, Any]]:
    """A previous report to resume from (empty when there is none)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write atomically, so a crash never leaves half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


async def grade_instances(
    instances: Sequence[Instance],
    patches: Mapping[str, str | None],
    *,
    images: ImageSource,
    factory: SandboxFactory,
    registry: SpecRegistry,
    timeout_s: float,
    output: Path | None = None,
    force: bool = False,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
    factory_for_cpus: FactoryForCpus | None = None,
    reinstall: str = "always",
    network: bool = False,
) -> dict[str, dict[str, Any]]:
    """Grade ``patches[instance_id]`` for each instance, one at a time (builds share 2 cores).

    A spec that asks for CPUs (``nano_cpus``: pylint's tests skip themselves
    with fewer than 2) is graded in a sandbox from ``factory_for_cpus``, as
    the official harness gives its container those CPUs. Any failure of one
    instance is caught here, at the instance boundary, and recorded as an
    ``error`` with its kind; the others go on.
    """
    report: dict[str, dict[str, Any]] = {} if output is None else load_report(output)
    for instance in instances:
        previous = report.get(instance.instance_id)
        if previous and previous.get("status") in FINAL and not force:
            log.info("%s already graded (%s); skipping", instance.instance_id, previous["status"])
            continue
        log_path = output.with_name(output.name + ".logs") / f"{instance.instance_id}.eval.log" if output else None
        entry = await _grade_one(
            instance, patches.get(instance.instance_id), images, factory, registry, timeout_s, log_path, factory_for_cpus,
            reinstall, network,
        )
        report[instance.instance_id] = entry
        if output is not None:
            write_report(output, report)
        if on_result is not None:
            on_result(instance.instance_id, entry)
    return report


async def _grade_one(
    instance: Instance,
    patch: str | None,
    images: ImageSource,
    factory: SandboxFactory,
    registry: SpecRegistry,
    timeout_s: float,
    log_path: Path | None,
    factory_for_cpus: FactoryForCpus | None = None,
    reinstall: str = "always",
    network: bool = False,
) -> dict[str, Any]:
    extra = {"repo": instance.repo, "version": instance.version}
    if patch is None:
        return {**GradeReport(instance.instance_id, "unresolved", "no prediction", patch_applied=False).as_dict(), **extra}
    started = time.monotonic()
    try:
        built = await asyncio.to_thread(images.ensure_instance, instance)
    except Exception as exc:  # noqa: BLE001 - the instance boundary: recorded, not raised
        return _error(instance, "build failed", exc, time.monotonic() - started, extra)
    build_s = time.monotonic() - started
    extra["image"] = built.ref.image
    extra["image_source"] = getattr(built, "source", "given")
    try:
        spec = registry.get(instance.repo, instance.version)
        if spec.nano_cpus and factory_for_cpus is not None:
            factory = factory_for_cpus(spec.nano_cpus / 1e9)
        graded = await grade_patch(
            factory, built.ref, instance, spec, patch, timeout_s=timeout_s, log_path=log_path, reinstall=reinstall,
            network=network,
        )
    except Exception as exc:  # noqa: BLE001 - the instance boundary
        return _error(instance, "grading failed", exc, build_s, extra)
    entry = graded.as_dict()
    entry["build_s"] = round(build_s, 1)
    if log_path is not None and log_path.is_file():
        entry["log"] = str(log_path)
    return {**entry, **extra}


def _error(instance: Instance, what: str, exc: BaseException, build_s: float, extra: dict[str, Any]) -> dict[str, Any]:
    kind = failure_kind(exc)
    log.warning("%s: %s: %s", instance.instance_id, what, exc)
    message = str(exc) if isinstance(exc, CodeMonkeysError) else f"{type(exc).__name__}: {exc}"
    report = GradeReport(instance.instance_id, "error", f"{what} ({kind}): {message[:2000]}", patch_applied=False, build_s=build_s)
    return {**report.as_dict(), "error_kind": str(kind), **extra}
