"""Loading SWE-bench instances and predictions from local files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codemonkeys.errors import DataError
from codemonkeys.swebench.instances import Instance, load_instances, load_predictions, parse_instances, split_ids

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "swebench" / "verified_dev.jsonl"


def _row(instance_id: str = "acme__calc-1", **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "repo": "acme/calc",
        "instance_id": instance_id,
        "base_commit": "a" * 40,
        "environment_setup_commit": "b" * 40,
        "version": "0.1",
        "problem_statement": "broken",
        "patch": "diff --git a/x b/x\n",
        "test_patch": "diff --git a/t b/t\n",
        "FAIL_TO_PASS": '["t::a"]',
        "PASS_TO_PASS": ["t::b", "t::c"],
    }
    row.update(changes)
    return row


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_tests_lists_from_json_strings_or_lists() -> None:
    (instance,) = parse_instances([_row()], "rows")
    assert instance.FAIL_TO_PASS == ["t::a"]
    assert instance.PASS_TO_PASS == ["t::b", "t::c"]
    assert instance.repo_slug == "acme__calc"


def test_jsonl_json_and_parquet_give_the_same_instances(tmp_path: Path) -> None:
    rows = [_row("a__b-1"), _row("a__b-2", FAIL_TO_PASS=["x"])]
    from_jsonl = load_instances(_write_jsonl(tmp_path / "d.jsonl", rows))
    (tmp_path / "d.json").write_text(json.dumps(rows))
    from_json = load_instances(tmp_path / "d.json")
    as_text = [{**r, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items() if k.endswith("_PASS")}} for r in rows]
    table = pa.Table.from_pylist(as_text)
    pq.write_table(table, tmp_path / "d.parquet")
    from_parquet = load_instances(tmp_path / "d.parquet")
    assert [i.instance_id for i in from_jsonl] == ["a__b-1", "a__b-2"]
    assert from_jsonl == from_json == from_parquet


def test_bad_rows_are_reported_by_instance_id(tmp_path: Path) -> None:
    rows = [
        _row("good-1"),
        {k: v for k, v in _row("missing-1").items() if k != "test_patch"},
        _row("malformed-1", FAIL_TO_PASS="[not json"),
        _row("badcommit-1", base_commit="zzz"),
        _row("numver-1", version=3.1),
        {k: v for k, v in _row().items() if k != "instance_id"},
    ]
    with pytest.raises(DataError) as excinfo:
        load_instances(_write_jsonl(tmp_path / "d.jsonl", rows))
    message = str(excinfo.value)
    assert "5 bad row(s)" in message
    assert "'missing-1': test_patch: missing" in message
    assert "'malformed-1': FAIL_TO_PASS" in message
    assert "'badcommit-1': base_commit" in message
    assert "'numver-1': version" in message
    assert "row 6 (no instance_id)" in message
    assert "good-1" not in message


def test_instance_ids_select_in_order_and_unknown_ids_are_named(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [_row("a-1"), _row("a-2"), _row("a-3")])
    assert [i.instance_id for i in load_instances(path, instance_ids=["a-3", "a-1"])] == ["a-3", "a-1"]
    with pytest.raises(DataError, match="unknown instance id.*nope-1, nope-2"):
        load_instances(path, instance_ids=["a-1", "nope-1", "nope-2"])


def test_a_bad_row_outside_the_selection_does_not_matter(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [_row("a-1"), _row("broken-1", FAIL_TO_PASS="[")])
    assert [i.instance_id for i in load_instances(path, instance_ids=["a-1"])] == ["a-1"]


def test_duplicate_ids_and_unknown_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="duplicate"):
        parse_instances([_row("x-1"), _row("x-1")], "rows")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"\.jsonl, \.json or \.parquet"):
        load_instances(tmp_path / "d.csv")
    with pytest.raises(DataError, match="neither an existing file nor a hub name"):
        load_instances(tmp_path / "missing.jsonl")


def test_split_ids() -> None:
    assert split_ids(" a, b ,,c ") == ["a", "b", "c"]
    assert split_ids(None) == []


def test_predictions(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "p.jsonl",
        [{"instance_id": "a-1", "model_patch": "diff"}, {"instance_id": "a-2", "model_patch": None, "model_name_or_path": "m"}],
    )
    assert load_predictions(path) == {"a-1": "diff", "a-2": None}
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"model_patch": "x"}, {"instance_id": "a", "model_patch": 3}])
    with pytest.raises(DataError, match="2 bad prediction"):
        load_predictions(bad)


@pytest.mark.skipif(not DEV.is_file(), reason="shared dev data not present")
def test_real_verified_rows_load() -> None:
    instances = load_instances(DEV)
    assert len(instances) == 113
    by_id = {i.instance_id: i for i in instances}
    django = by_id["django__django-11099"]
    assert isinstance(django, Instance) and django.version == "3.0"
    assert django.FAIL_TO_PASS and all(isinstance(t, str) for t in django.PASS_TO_PASS)
