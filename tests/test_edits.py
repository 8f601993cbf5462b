"""SEARCH/REPLACE blocks: format round trips, application, diffs and their canonical form."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from codemonkeys.edits import (
    EditBlock,
    EditsNotApplied,
    apply_edits,
    changed_lines,
    files_touched,
    is_stray_path,
    make_diff,
    normalize_patch,
    parse_edits,
    patch_hash,
    render_edit,
    render_edits,
)
from codemonkeys.edits.blocks import MARKERS
from codemonkeys.errors import DataError, EditApplyError, ParseError
from codemonkeys.resources import resource_dir

SUBMISSIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "submissions" / "verified"

# --- strategies -------------------------------------------------------------------

_line_text = st.text(
    alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=12
).filter(lambda line: line.rstrip() not in MARKERS)
_lines_block = st.lists(_line_text, max_size=5).map(
    lambda lines: "".join(line + "\n" for line in lines)
)
_paths = st.from_regex(r"[a-z_][a-z0-9_]{0,6}(/[a-z_][a-z0-9_]{0,6}){0,2}\.py", fullmatch=True)
_blocks = st.builds(EditBlock, path=_paths, search=_lines_block, replace=_lines_block)


def block(path: str, search: str, replace: str) -> EditBlock:
    return EditBlock(path=path, search=search, replace=replace)


# --- format -------------------------------------------------------------------------


@given(st.lists(_blocks, max_size=4))
def test_parse_render_round_trip(blocks: list[EditBlock]) -> None:
    text = render_edits(blocks)
    assert parse_edits(text) == blocks
    assert render_edits(parse_edits(text)) == text


def test_parse_ignores_prose_and_fences_around_edits() -> None:
    text = (
        "I will fix the bug.\n```\n<edit>\n<path> pkg/a.py </path>\n<<<<<<< SEARCH\n"
        "x = 1\n=======\nx = 2\n>>>>>>> REPLACE\n</edit>\n```\nDone. <edit> mentioned inline is prose.\n"
    )
    assert parse_edits(text) == [block("pkg/a.py", "x = 1\n", "x = 2\n")]
    assert parse_edits("no edits here") == []


def test_parse_keeps_content_verbatim_including_tags_and_odd_characters() -> None:
    content = "\tx = '<edit>'\n</edit>\n    =======\n\x0cform feed\u2028separator\n"
    parsed = parse_edits(render_edit(block("a.py", content, "")))
    assert parsed == [block("a.py", content, "")]


def test_parse_crlf_answer() -> None:
    text = "<edit>\r\n<path>a.py</path>\r\n<<<<<<< SEARCH\r\nold\r\n=======\r\nnew\r\n>>>>>>> REPLACE\r\n</edit>\r\n"
    assert parse_edits(text) == [block("a.py", "old\n", "new\n")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<edit>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</edit>\n", "<path>"),
        ("<edit>\n<path>a.py</path>\na\n=======\nb\n>>>>>>> REPLACE\n</edit>\n", "<<<<<<< SEARCH"),
        (
            "<edit>\n<path>a.py</path>\n<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n</edit>\n",
            "found '>>>>>>> REPLACE' before '======='",
        ),
        (
            "<edit>\n<path>a.py</path>\n<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE\n</edit>\n",
            "second '======='",
        ),
        (
            "<edit>\n<path>a.py</path>\n<<<<<<< SEARCH\na\n=======\nb\n",
            "ended before the line '>>>>>>> REPLACE'",
        ),
        (
            "<edit>\n<path>a.py</path>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
            "expected </edit>",
        ),
        (
            (
                "<edit>\n<path>a.py</path>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
                "<<<<<<< SEARCH\nc\n=======\nd\n>>>>>>> REPLACE\n</edit>\n"
            ),
            "exactly one SEARCH/REPLACE block",
        ),
        (
            "<path>a.py</path>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
            "outside an <edit>",
        ),
        (
            "<edit>\n<path>/etc/passwd</path>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</edit>\n",
            "absolute",
        ),
        (
            "<edit>\n<path>a/../../b.py</path>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</edit>\n",
            "'..'",
        ),
    ],
)
def test_parse_errors_tell_the_model_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_edits(text)
    assert message in str(info.value)
    assert "edit" in str(info.value)


def test_second_edit_error_names_it() -> None:
    good = render_edit(block("a.py", "a\n", "b\n"))
    with pytest.raises(ParseError, match=r"^edit 2 \(the <edit> on line 10"):
        parse_edits(good + "\n<edit>\n<path>b.py</path>\n</edit>\n")


@pytest.mark.parametrize(
    "path", ["", "/abs.py", "a/../b.py", "..", "C:/x.py", "a\\b.py", "dir/", "."]
)
def test_edit_block_rejects_paths_outside_the_repo(path: str) -> None:
    with pytest.raises(ValueError):
        block(path, "", "x\n")


def test_edit_block_canonical_path_and_line_ends() -> None:
    edit = block("./pkg//a.py", "a\r\nb\r\n", "c\r\n")
    assert (edit.path, edit.search, edit.replace) == ("pkg/a.py", "a\nb\n", "c\n")
    with pytest.raises(ValueError, match="whole lines"):
        block("a.py", "no newline", "")
    with pytest.raises(ValueError, match="marker"):
        block("a.py", "=======\n", "")


def test_format_instructions_example_parses() -> None:
    env = Environment(loader=FileSystemLoader(resource_dir("prompts")), undefined=StrictUndefined)
    text = env.get_template("formats/edits.j2").render()
    [example] = parse_edits(text)
    assert example.path == "path/relative/to/repo/root.py"
    assert example.replace.endswith("self.width * self.height\n")


# --- application --------------------------------------------------------------------

SOURCE = "import os\n\n\ndef area(w, h):\n    return w * w\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"


def test_exact_replace_and_new_file() -> None:
    result = apply_edits(
        {"geo.py": SOURCE, "other.py": "x = 1\n"},
        [
            block(
                "geo.py",
                "def area(w, h):\n    return w * w\n",
                "def area(w, h):\n    return w * h\n",
            ),
            block("pkg/new.py", "", "VALUE = 1\n"),
        ],
    )
    assert result == {"geo.py": SOURCE.replace("w * w", "w * h"), "pkg/new.py": "VALUE = 1\n"}


def test_empty_replace_deletes_lines() -> None:
    result = apply_edits({"geo.py": SOURCE}, [block("geo.py", "import os\n\n", "")])
    assert result["geo.py"] == SOURCE.removeprefix("import os\n\n")


def test_blocks_apply_in_order_on_the_same_file() -> None:
    result = apply_edits(
        {"a.py": "a = 1\nb = 2\n"},
        [
            block("a.py", "a = 1\n", "a = 10\n"),
            block("a.py", "a = 10\nb = 2\n", "a = 10\nb = 20\n"),
        ],
    )
    assert result == {"a.py": "a = 10\nb = 20\n"}


def test_trailing_whitespace_tolerated_when_unique() -> None:
    files = {"a.py": "def f():   \n    return 1\t\n"}
    result = apply_edits(
        files, [block("a.py", "def f():\n    return 1\n", "def f():\n    return 2\n")]
    )
    assert result == {"a.py": "def f():\n    return 2\n"}


def test_indentation_shift_is_applied_to_replace() -> None:
    files = {"a.py": "class A:\n    def f(self):\n\n        return 1\n"}
    under = block("a.py", "def f(self):\n\n    return 1\n", "def f(self):\n\n    return 2\n")
    over = block(
        "a.py",
        "        def f(self):\n\n            return 1\n",
        "        def f(self):\n\n            return 3\n",
    )
    assert apply_edits(files, [under]) == {
        "a.py": "class A:\n    def f(self):\n\n        return 2\n"
    }
    assert apply_edits(files, [over]) == {
        "a.py": "class A:\n    def f(self):\n\n        return 3\n"
    }


def test_inconsistent_indentation_does_not_match() -> None:
    files = {"a.py": "class A:\n    def f(self):\n        return 1\n"}
    with pytest.raises(EditsNotApplied, match="not found"):
        apply_edits(files, [block("a.py", "def f(self):\n        return 1\n", "")])


def test_multiple_matches_are_rejected_with_line_numbers() -> None:
    files = {"a.py": "x = 1\ny = 2\nx = 1\n\nx = 1\n"}
    with pytest.raises(EditsNotApplied) as info:
        apply_edits(files, [block("a.py", "x = 1\n", "x = 3\n")])
    message = str(info.value)
    assert "matches 3 places in a.py exactly (line 1, line 3, line 5)" in message
    assert "Edit block 1 (file a.py)" in message


def test_multiple_fuzzy_matches_are_rejected() -> None:
    files = {"a.py": "if a:\n    x = 1\nif b:\n        x = 1\n"}
    with pytest.raises(
        EditsNotApplied, match="matches 2 places in a.py when indentation is ignored"
    ):
        apply_edits(files, [block("a.py", "x = 1\n", "x = 2\n")])


def test_not_found_shows_closest_lines_with_numbers() -> None:
    with pytest.raises(EditsNotApplied) as info:
        apply_edits(
            {"geo.py": SOURCE},
            [block("geo.py", "def perimeter(w, h):\n    return 2 * (w - h)\n", "")],
        )
    message = str(info.value)
    assert "most similar part is lines 8-9" in message
    assert "\n8 | def perimeter(w, h):\n9 |     return 2 * (w + h)\n" in message
    assert "-    return 2 * (w - h)" in message and "+    return 2 * (w + h)" in message


def test_failures_are_all_reported_and_nothing_is_applied() -> None:
    files = {"geo.py": SOURCE}
    edits = [
        block("geo.py", "import os\n", "import sys\n"),
        block("geo.py", "does not exist\n", ""),
        block("missing.py", "x\n", "y\n"),
        block("geo.py", "", "overwrite\n"),
    ]
    with pytest.raises(EditApplyError) as info:
        apply_edits(files, edits)
    error = info.value
    assert isinstance(error, EditsNotApplied)
    assert [f.index for f in error.failures] == [2, 3, 4]
    assert "3 of 4 edit block(s) could not be applied" in str(error)
    assert "the file does not exist" in str(error)
    assert "already exists and is not empty" in str(error)
    assert files == {"geo.py": SOURCE}


def test_missing_file_suggests_close_paths() -> None:
    with pytest.raises(EditsNotApplied, match="Did you mean pkg/geometry.py"):
        apply_edits({"pkg/geometry.py": SOURCE}, [block("pkg/geometry.pyy", "x\n", "")])


def test_empty_search_fills_an_empty_file_and_creating_twice_fails() -> None:
    assert apply_edits({"a.py": ""}, [block("a.py", "", "x = 1\n")]) == {"a.py": "x = 1\n"}
    with pytest.raises(EditsNotApplied, match="block 2"):
        apply_edits({}, [block("n.py", "", "a\n"), block("n.py", "", "b\n")])
    assert apply_edits({}, [block("empty.py", "", "")]) == {"empty.py": ""}


def test_crlf_file_keeps_its_line_ends() -> None:
    files = {"w.py": "a = 1\r\nb = 2\r\nc = 3\r\n"}
    result = apply_edits(files, [block("w.py", "b = 2\n", "b = 20\nb2 = 21\n")])
    assert result == {"w.py": "a = 1\r\nb = 20\r\nb2 = 21\r\nc = 3\r\n"}


def test_unicode_and_form_feed_content() -> None:
    files = {"u.py": "# coding: utf-8\n\x0c\nname = 'café ☕'\n"}
    result = apply_edits(files, [block("u.py", "name = 'café ☕'\n", "name = '茶 🍵'\n")])
    assert result == {"u.py": "# coding: utf-8\n\x0c\nname = '茶 🍵'\n"}


def test_last_line_without_newline_stays_without() -> None:
    result = apply_edits({"a.py": "x = 1\ny = 2"}, [block("a.py", "y = 2\n", "y = 3\nz = 4\n")])
    assert result == {"a.py": "x = 1\ny = 3\nz = 4"}


def test_no_op_edits_change_nothing() -> None:
    files = {"a.py": "x = 1\n"}
    assert apply_edits(files, [block("a.py", "x = 1\n", "x = 1\n")]) == {}
    assert (
        apply_edits(
            files, [block("a.py", "x = 1\n", "x = 2\n"), block("a.py", "x = 2\n", "x = 1\n")]
        )
        == {}
    )
    assert apply_edits(files, []) == {}


@given(
    lines=st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True),
    data=st.data(),
)
def test_replacing_any_unique_region(lines: list[int], data: st.DataObject) -> None:
    text_lines = [f"line_{n} = {n}\n" for n in lines]
    start = data.draw(st.integers(0, len(lines) - 1))
    end = data.draw(st.integers(start + 1, len(lines)))
    replacement = data.draw(st.lists(_line_text.map(lambda s: s + "\n"), max_size=4))
    before = "".join(text_lines)
    result = apply_edits(
        {"f.py": before}, [block("f.py", "".join(text_lines[start:end]), "".join(replacement))]
    )
    expected = "".join(text_lines[:start] + replacement + text_lines[end:])
    assert result == ({} if expected == before else {"f.py": expected})


# --- diffs ----------------------------------------------------------------------------


def _git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    """Run git; bytes in and out so CRLF content is not translated."""
    return subprocess.run(
        ["git", "-c", "core.autocrlf=false", *args],
        cwd=cwd,
        input=None if stdin is None else stdin.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")


def _write(root: Path, files: dict[str, str]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8"))


def _git_repo(root: Path, files: dict[str, str]) -> None:
    _git(root, "init", "-q")
    _write(root, files)
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")


OLD = {
    "geo.py": SOURCE,
    "crlf.py": "a\r\nb\r\n",
    "tail.py": "x = 1",
    "gone.py": "bye\n",
    "u.py": "s = 'é'\n",
}
NEW: dict[str, str | None] = {
    "geo.py": SOURCE.replace("w * w", "w * h"),
    "crlf.py": "a\r\nB\r\n",
    "tail.py": "x = 2",
    "gone.py": None,
    "u.py": "s = 'ü ☕'\n",
    "pkg/new.py": "created = True\n",
    "pkg/empty.py": "",
}


def test_make_diff_applies_with_git_and_matches_git_diff(tmp_path: Path) -> None:
    patch = make_diff(OLD, NEW)
    assert "--- /dev/null\n+++ b/pkg/new.py\n" in patch and "+++ /dev/null\n" in patch
    assert "\\ No newline at end of file\n" in patch
    _git_repo(tmp_path, OLD)
    _git(tmp_path, "apply", "-", stdin=patch)
    for path, content in NEW.items():
        if content is None:
            assert not (tmp_path / path).exists()
        else:
            assert (tmp_path / path).read_bytes().decode("utf-8") == content
    _git(tmp_path, "add", "-A")
    git_patch = _git(tmp_path, "diff", "--cached", "--no-renames")
    assert "index " in git_patch
    assert normalize_patch(git_patch) == patch


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    old=st.lists(_line_text, max_size=12), new=st.lists(_line_text, max_size=12), eol=st.booleans()
)
def test_make_diff_round_trips_through_git_apply(
    tmp_path_factory: pytest.TempPathFactory, old: list[str], new: list[str], eol: bool
) -> None:
    root = tmp_path_factory.mktemp("repo")
    before, after = "\n".join(old) + ("\n" if eol and old else ""), "\n".join(new) + "\n"
    patch = make_diff({"f.txt": before}, {"f.txt": after})
    assert normalize_patch(patch) == patch
    _write(root, {"f.txt": before})
    if patch:
        subprocess.run(
            ["git", "apply", "--unsafe-paths", "-"], cwd=root, input=patch.encode(), check=True
        )
    assert (root / "f.txt").read_bytes().decode("utf-8") == (after if patch else before)


GIT_STYLE = """diff --git a/pkg/b.py b/pkg/b.py
index 83db48f..bf269f4 100644
--- a/pkg/b.py\t2024-01-01 10:00:00.000000000 +0000
+++ b/pkg/b.py\t2024-01-01 10:00:01.000000000 +0000
@@ -1,3 +1,3 @@ def section():
 a
-b
+c
 d
diff --git a/pkg/__pycache__/b.cpython-311.pyc b/pkg/__pycache__/b.cpython-311.pyc
index 1..2 100644
Binary files a/pkg/__pycache__/b.cpython-311.pyc and b/pkg/__pycache__/b.cpython-311.pyc differ
diff --git a/pkg.egg-info/SOURCES.txt b/pkg.egg-info/SOURCES.txt
new file mode 100644
--- /dev/null
+++ b/pkg.egg-info/SOURCES.txt
@@ -0,0 +1 @@
+pkg/b.py
diff --git a/a.py b/a.py   \n--- a/a.py   \n+++ b/a.py   \n@@ -1 +1 @@
-x
+y
"""


def test_normalize_patch_canonical_form() -> None:
    normal = normalize_patch(GIT_STYLE)
    assert normal == (
        "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n"
        "diff --git a/pkg/b.py b/pkg/b.py\n--- a/pkg/b.py\n+++ b/pkg/b.py\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n"
    )
    assert normalize_patch(normal) == normal
    assert files_touched(GIT_STYLE) == ("a.py", "pkg/b.py")
    assert changed_lines(GIT_STYLE) == 4
    assert patch_hash(GIT_STYLE) == patch_hash(normal) != patch_hash(normal.replace("+c", "+C"))
    assert normalize_patch("") == "" and normalize_patch("\n\n") == ""
    assert patch_hash("") == patch_hash(
        GIT_STYLE.split("diff --git a/a.py")[0].split("diff --git a/pkg/b.py")[0]
    )


def test_normalize_keeps_modes_and_renames_and_empty_new_files() -> None:
    patch = (
        "diff --git a/old.py b/new.py\nsimilarity index 100%\nrename from old.py\nrename to new.py\n"
        "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n"
        "diff --git a/empty.py b/empty.py\nnew file mode 100644\nindex 0000000..e69de29\n"
    )
    assert normalize_patch(patch) == (
        "diff --git a/empty.py b/empty.py\nnew file mode 100644\n"
        "diff --git a/old.py b/new.py\nrename from old.py\nrename to new.py\n"
        "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n"
    )


def test_normalize_restores_blank_context_lost_to_strip() -> None:
    full = (
        "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1,3 +1,4 @@\n x = 1\n+y = 2\n \n \n"
    )
    assert normalize_patch(full.rstrip()) == normalize_patch(full) == full


def test_normalize_rejects_garbage() -> None:
    with pytest.raises(DataError, match="not a valid unified diff"):
        normalize_patch(
            "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1,3 +1,3 @@\n a\nnot a diff line\n"
        )


@pytest.mark.parametrize(
    ("path", "stray"),
    [
        ("pkg/__pycache__/m.cpython-39.pyc", True),
        ("m.pyc", True),
        ("src/x.egg-info/PKG-INFO", True),
        (".pytest_cache/v/cache", True),
        ("build/lib/x.py", True),
        ("pkg/build/x.py", False),
        ("build.py", False),
        ("pkg/mod.py", False),
        (".hypothesis/examples/x", True),
    ],
)
def test_stray_paths(path: str, stray: bool) -> None:
    assert is_stray_path(path) is stray


@pytest.mark.skipif(not SUBMISSIONS.is_dir(), reason="shared data folder absent")
def test_real_submission_patches_normalize_idempotently() -> None:
    count = 0
    for preds in sorted(SUBMISSIONS.glob("*/all_preds.jsonl")):
        for line in preds.read_text(encoding="utf-8").splitlines():
            patch = json.loads(line).get("model_patch") or ""
            if not patch.strip():
                continue
            normal = normalize_patch(patch)
            assert normal and normalize_patch(normal) == normal
            assert "\nindex " not in normal
            count += 1
    assert count == 1933  # four submissions' non-empty patches
