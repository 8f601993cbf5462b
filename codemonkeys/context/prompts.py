"""What the relevance and ranking prompts share: a template, sampling settings, the system part, re-asks."""

from __future__ import annotations

from typing import ClassVar, Self

from ..prompting import Prompt


class StagePrompt:
    """A stage's template with its sampling settings; the system part is rendered once."""

    TEMPLATE: ClassVar[str]

    def __init__(self, template: Prompt, *, max_tokens: int, temperature: float) -> None:
        self.template = template
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._system = template.render("system")

    @classmethod
    def load(cls, *, max_tokens: int, temperature: float) -> Self:
        return cls(Prompt(cls.TEMPLATE), max_tokens=max_tokens, temperature=temperature)

    @property
    def version(self) -> str:
        return self.template.version

    @property
    def system(self) -> str:
        return self._system

    def reask(self, error: str) -> str:
        return self.template.render("reask", error=error)
