"""Rendering the Jinja prompt templates in ``prompts/``.

A template file defines its parts as macros (``system``, ``first``,
``feedback``...), so a stage can place the parts shared by many calls first,
where prompt caches reuse them. Templates may include the output-format
instructions in ``prompts/formats/``; each format has its parser beside the
code that reads it. A template's version hashes its text and every format
file, so editing any prompt changes the cache keys that depend on it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from .errors import ConfigError
from .resources import resource_dir


@functools.cache
def _environment(root: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


class Prompt:
    """One template file and the macros it defines."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = name
        self._root = root or resource_dir("prompts")
        try:
            self._template = _environment(self._root).get_template(name)
            self._module = self._template.module
        except jinja2.TemplateNotFound as exc:
            raise ConfigError(f"prompt template {name!r} not found in {self._root}") from exc
        except jinja2.TemplateError as exc:
            raise ConfigError(f"prompt template {name!r} is invalid: {exc}") from exc

    @functools.cached_property
    def version(self) -> str:
        """12 hex digits over the template's text and every template it includes, recursively.

        Only what the prompt is made of counts: editing an unrelated format does
        not invalidate the cached answers of this prompt.
        """
        digest = hashlib.sha256()
        for name in self._sources():
            digest.update(name.encode() + b"\0" + (self._root / name).read_bytes())
        return digest.hexdigest()[:12]

    def _sources(self) -> list[str]:
        environment = _environment(self._root)
        seen: list[str] = []
        pending = [self.name]
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.append(name)
            source = (self._root / name).read_text(encoding="utf-8")
            pending.extend(ref for ref in meta.find_referenced_templates(environment.parse(source)) if ref)
        return sorted(seen)

    def render(self, part: str, **values: Any) -> str:
        """Render macro ``part`` with ``values``; unknown variables are errors, never blanks."""
        macro = getattr(self._module, part, None)
        if macro is None:
            raise ConfigError(f"prompt template {self.name!r} has no part {part!r}")
        try:
            return str(macro(**values)).strip("\n")
        except jinja2.TemplateError as exc:
            raise ConfigError(f"prompt template {self.name!r}, part {part!r}: {exc}") from exc
