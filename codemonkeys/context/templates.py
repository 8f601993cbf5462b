"""Loading the context stage's Jinja prompt templates, each split into named parts.

A template defines its parts as macros (``system``, ``issue``, ``file``...)
so the stage can put the parts shared by many calls first, in messages of
their own, where prompt caches can reuse them. The template's version is a
hash of its text: editing a prompt changes the version, and with it every
cache key that depends on the prompt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import jinja2

from ..errors import ConfigError
from ..resources import resource_dir


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template: its text, version and the macros it defines."""

    name: str
    text: str
    module: Any

    @property
    def version(self) -> str:
        """12 hex digits of the template text's sha256."""
        return prompt_version(self.text)

    def render(self, part: str, **values: Any) -> str:
        """Render one macro of the template with ``values``."""
        macro = getattr(self.module, part, None)
        if macro is None:
            raise ConfigError(f"prompt template {self.name!r} has no part {part!r}")
        return str(macro(**values)).strip("\n")


def prompt_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_template(name: str) -> PromptTemplate:
    """The template ``prompts/<name>``; unknown variables are errors, never blanks."""
    path = resource_dir("prompts") / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"prompt template {path} cannot be read: {exc.strerror or exc}") from exc
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    try:
        module = env.from_string(text).module
    except jinja2.TemplateError as exc:
        raise ConfigError(f"prompt template {path} is invalid: {exc}") from exc
    return PromptTemplate(name, text, module)
