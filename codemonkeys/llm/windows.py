"""Every stage's context window, settled when a run starts.

``models.<stage>.context_window`` set by the user always wins. Otherwise an
OpenAI-compatible server is asked what it serves (through a
:class:`WindowProbe`, so this module does no I/O), and failing that the
shipped table (``configs/context_windows.yaml``, merged into
``Config.context_windows``) is looked up by the longest matching name prefix.
A model found nowhere keeps ``None``: the loop then relies on the provider's
context-length error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from ..config import Config
from .registry import STAGES
from .spec import ModelSpec, parse_model_string

log = logging.getLogger(__name__)

Source = Literal["config", "server", "table", "unknown"]


class WindowProbe(Protocol):
    """Asks a model's server how many tokens it serves; ``None`` when it does not say."""

    def served_window(self, spec: ModelSpec) -> int | None: ...


class NoProbe:
    """A probe that never asks (offline runs, tests, ``--estimate``)."""

    def served_window(self, spec: ModelSpec) -> int | None:
        return None


@dataclass(frozen=True, slots=True)
class ResolvedWindow:
    """Where one stage's window came from, as recorded in the run."""

    stage: str
    model: str
    tokens: int | None
    source: Source

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def table_window(table: Mapping[str, int], spec: ModelSpec) -> int | None:
    """The table's window for ``spec``: exact name, else the longest listed prefix."""
    name = spec.name
    if not name:
        return None
    if name in table:
        return table[name]
    matches = [key for key in table if name.startswith(key)]
    return table[max(matches, key=len)] if matches else None


def resolve_window(configured: int | None, spec: ModelSpec, table: Mapping[str, int], served: int | None) -> tuple[int | None, Source]:
    """Pure precedence: the config, then the server's report, then the table."""
    if configured is not None:
        return configured, "config"
    if served is not None and served > 0:
        return served, "server"
    found = table_window(table, spec)
    if found is not None:
        return found, "table"
    return None, "unknown"


def resolve_context_windows(config: Config, probe: WindowProbe) -> tuple[Config, list[ResolvedWindow]]:
    """A copy of ``config`` with every stage's ``context_window`` filled where it can be.

    The server is asked only for OpenAI-compatible models the user left unset
    (hosted APIs do not report windows; the table knows them).
    """
    resolved: list[ResolvedWindow] = []
    models = config.models.model_copy(deep=True)
    for stage in STAGES:
        settings = getattr(models, stage)
        spec = parse_model_string(settings.model)
        served = None
        if settings.context_window is None and spec.provider == "openai-compatible":
            served = probe.served_window(spec)
        tokens, source = resolve_window(settings.context_window, spec, config.context_windows, served)
        if tokens is not None and tokens != settings.context_window:
            settings.context_window = tokens
        resolved.append(ResolvedWindow(stage, spec.label, tokens, source))
        log.info("%s: context window %s (%s)", stage, tokens, source)
    return config.model_copy(update={"models": models}), resolved
