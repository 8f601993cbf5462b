"""The deterministic core of generation: edit blocks, diffs, reproduction tests.

Everything here is a pure function over strings and mappings; the trajectories
that read files from a sandbox and call a model sit on top of it.
"""

from .apply import BlockFailure, EditsNotApplied, apply_edits
from .blocks import EditBlock, check_relative_path, parse_edits, render_edit, render_edits
from .diff import (
    changed_lines,
    files_touched,
    is_stray_path,
    make_diff,
    normalize_patch,
    patch_hash,
)
from .testscript import (
    EXIT_FIXED,
    EXIT_NOT_FIXED,
    TestOutcome,
    TestScript,
    classify_exit,
    parse_test_script,
    render_test_script,
)

__all__ = [
    "EXIT_FIXED",
    "EXIT_NOT_FIXED",
    "BlockFailure",
    "EditBlock",
    "EditsNotApplied",
    "TestOutcome",
    "TestScript",
    "apply_edits",
    "changed_lines",
    "check_relative_path",
    "classify_exit",
    "files_touched",
    "is_stray_path",
    "make_diff",
    "normalize_patch",
    "parse_edits",
    "parse_test_script",
    "patch_hash",
    "render_edit",
    "render_edits",
    "render_test_script",
]
