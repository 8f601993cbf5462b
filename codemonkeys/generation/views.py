"""What the editing model sees of the files it changed: their exact current text.

A SEARCH block must copy the current text, which after a few accumulated
edits is no longer the text in the system prompt. So after every turn the
model is shown each changed file as it is now: whole when it is short, else
the changed regions with enough surrounding lines to anchor a SEARCH (a long
file shown whole every turn would fill the context window in a few turns).
"""

from __future__ import annotations

import difflib
from typing import Any

CONTEXT_LINES = 25


def changed_regions(original: str, current: str, context: int = CONTEXT_LINES) -> list[tuple[int, int]]:
    """0-based ``[start, end)`` line ranges of ``current`` around every change, merged when they touch."""
    old, new = original.splitlines(keepends=True), current.splitlines(keepends=True)
    merged: list[list[int]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, _, _, start, end in matcher.get_opcodes():
        if tag == "equal":
            continue
        low, high = max(0, start - context), min(len(new), end + context)
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(low, high) for low, high in merged if high > low]


def file_view(path: str, original: str | None, current: str | None, limit_chars: int) -> dict[str, Any]:
    """One changed file for the prompt: ``content`` (whole), or ``excerpts`` of it, or deleted."""
    if current is None:
        return {"path": path, "deleted": True, "content": None, "excerpts": []}
    if len(current) <= limit_chars:
        return {"path": path, "deleted": False, "content": current, "excerpts": []}
    lines = current.splitlines(keepends=True)
    excerpts = [
        {"start": low + 1, "end": high, "text": "".join(lines[low:high])}
        for low, high in changed_regions(original or "", current)
    ]
    return {"path": path, "deleted": False, "content": None, "excerpts": excerpts}
