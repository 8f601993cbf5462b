"""The current text of changed files as the editing model sees it: whole when short, regions when long."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from codemonkeys.generation.views import changed_regions, file_view

LONG = "".join(f"line {i}\n" for i in range(200))


def test_short_files_are_shown_whole_and_deleted_ones_as_deleted() -> None:
    assert file_view("a.py", "x = 0\n", "x = 1\n", 100) == {"path": "a.py", "deleted": False, "content": "x = 1\n", "excerpts": []}
    assert file_view("a.py", "x = 0\n", None, 100)["deleted"] is True


def test_long_files_show_the_regions_around_each_change_exactly_as_they_are_now() -> None:
    current = LONG.replace("line 10\n", "line ten\n").replace("line 150\n", "line 150\nadded\n")
    view = file_view("a.py", LONG, current, 100)
    assert view["content"] is None
    parts = view["excerpts"]
    assert [(p["start"], p["end"]) for p in parts] == [(1, 36), (127, 177)]
    lines = current.splitlines(keepends=True)
    for part in parts:
        assert part["text"] == "".join(lines[part["start"] - 1 : part["end"]])
    assert "line ten\n" in parts[0]["text"] and "added\n" in parts[1]["text"]


def test_nearby_changes_merge_into_one_region() -> None:
    current = LONG.replace("line 50\n", "fifty\n").replace("line 60\n", "sixty\n")
    assert changed_regions(LONG, current) == [(25, 86)]


@given(st.lists(st.integers(0, 199), min_size=1, max_size=6, unique=True))
def test_every_changed_line_is_inside_a_region(changed: list[int]) -> None:
    lines = LONG.splitlines(keepends=True)
    for index in changed:
        lines[index] = f"changed {index}\n"
    regions = changed_regions(LONG, "".join(lines), context=3)
    assert all(any(low <= index < high for low, high in regions) for index in changed)
    assert all(a[1] < b[0] for a, b in zip(regions, regions[1:]))  # disjoint and ordered
