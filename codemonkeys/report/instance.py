"""Everything one instance's inspector shows (``codemonkeys show`` and the report's instance pages).

Pure reads of the run store into plain dataclasses: the context stage's
decisions, rankings and packing; every trajectory turn by turn with its spend
from the ledger; the candidates grouped with the test x candidate grid; the
selection and, where the run has grades, which candidates resolve. Nothing
here renders or writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..store.records import CallRecord, ContextDecision, LedgerRow, TrajectoryRecord, TurnRecord

ORIGINAL = "original"
GRADE_STAGE = "grade"
KIND_ORDER = ("testing", "editing", "selection")
# How a grid cell is drawn, by outcome (a rebuilt grid only knows "pass" / "not pass").
OUTCOME_MARKS = {"fixed": "✓", "not_fixed": "✗", "crashed": "!", "timed_out": "T", "pass": "✓", "not pass": "·"}


class InstanceSource(Protocol):
    """The part of the run store the inspector reads."""

    def instance_states(self) -> list[dict[str, Any]]: ...

    def get_result(self, instance_id: str, stage: str, key: str) -> Any | None: ...

    def context_decisions(
        self, instance_id: str, model: str | None = None, prompt_version: str | None = None
    ) -> list[ContextDecision]: ...

    def trajectories(self, instance_id: str | None = None, kind: str | None = None) -> list[TrajectoryRecord]: ...

    def turns(self, trajectory_id: str) -> list[TurnRecord]: ...

    def ledger(self, group_by: Sequence[str] = ..., **where: str | None) -> list[LedgerRow]: ...

    def calls(self, **where: str | None) -> list[CallRecord]: ...

    def candidates(self, instance_id: str) -> list[dict[str, Any]]: ...

    def selection(self, instance_id: str) -> dict[str, Any] | None: ...


@dataclass
class FileDecision:
    """One file's relevance decision: ``scored`` (relevant or not, with a summary), ``parse_failure`` or ``error``."""

    path: str
    status: str
    relevant: bool | None
    summary: str | None
    tokens: int | None
    detail: str | None


@dataclass
class PackedItem:
    path: str
    tokens: int | None
    rank: int | None
    mean_rank: float | None


@dataclass
class ContextView:
    """The context stage for one instance; ``ran`` is false when it has no stored result."""

    ran: bool
    files: int = 0
    decisions: list[FileDecision] = field(default_factory=list)
    rankings: list[list[str]] = field(default_factory=list)
    ranking_failures: list[str] = field(default_factory=list)
    ranked: list[str] = field(default_factory=list)
    unranked: list[str] = field(default_factory=list)
    ranking_fallback: str = ""
    packed: list[PackedItem] = field(default_factory=list)
    cut: list[PackedItem] = field(default_factory=list)
    budget_tokens: int = 0
    packed_tokens: int = 0
    window_limit_tokens: int | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    complete: bool = True

    @property
    def relevant(self) -> int:
        return sum(1 for d in self.decisions if d.relevant)

    @property
    def parse_failures(self) -> int:
        return sum(1 for d in self.decisions if d.status == "parse_failure")


@dataclass
class Run:
    """A test run as the model saw it: where it ran, exit code, outcome, output (cut in the middle)."""

    label: str
    exit_code: object
    outcome: str
    output: str


@dataclass
class Turn:
    """One model call and what came of it; ``observation`` is the next user message."""

    number: int
    action: str
    model_text: str
    observation: str
    applied: bool | None = None
    edits: int | None = None
    error: str | None = None
    test: str | None = None
    runs: list[Run] = field(default_factory=list)


@dataclass
class Spent:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0


@dataclass
class TrajectoryView:
    """One trajectory: how it ended, its opening message, its turns and what it cost."""

    trajectory_id: str
    kind: str
    index: int
    status: str
    failure_kind: str | None
    failure: str | None
    opening: str
    turns: list[Turn]
    spent: Spent
    test: str | None = None
    patch: str | None = None
    choice: int | None = None


@dataclass
class Group:
    """Candidates with the same normalized patch; ``votes`` from the selection's ranking."""

    key: str
    members: list[str]
    patch: str
    votes: int | None
    changed_lines: int | None
    selected: bool
    grade: str | None


@dataclass
class Grid:
    """The test x candidate matrix: ``cells[test][column]`` is an outcome, ``flaky`` the cells that disagreed."""

    tests: list[str]
    columns: list[str]
    cells: dict[str, dict[str, str]]
    counted: list[str]
    flaky: list[tuple[str, str]]
    exact: bool  # False: rebuilt from each group's passing tests (pass / not pass only)


@dataclass
class SelectionView:
    method: str
    candidate_id: str | None
    reason: str
    trajectory_id: str | None
    top_k: list[str]
    skipped_empty: int = 0
    skipped_unparsable: int = 0


@dataclass
class InstanceView:
    instance_id: str
    stage: str
    status: str
    failure_kind: str | None
    failure: str | None
    plan: dict[str, Any] | None
    context: ContextView
    trajectories: list[TrajectoryView]
    groups: list[Group]
    grid: Grid | None
    selection: SelectionView | None
    spent: Spent
    graded: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trajectory(self, wanted: str) -> TrajectoryView | None:
        """A trajectory by full id, by ``kind/index`` or by its id's tail (a selection key)."""
        for view in self.trajectories:
            if wanted in (view.trajectory_id, f"{view.kind}/{view.index}", view.trajectory_id.split("/", 1)[-1]):
                return view
        return None


def _context(store: InstanceSource, iid: str) -> ContextView:
    result = store.get_result(iid, "context", "result")
    if result is None:
        decisions = store.context_decisions(iid)
        return ContextView(ran=False, decisions=[_decision(d) for d in decisions])
    decisions = store.context_decisions(iid, result.get("relevance_model"), result.get("relevance_prompt"))
    tokens = {d.path: d.tokens for d in decisions}
    ranked = list(result.get("ranked", []))
    mean = result.get("mean_ranks", {})

    def item(path: str, size: int | None) -> PackedItem:
        return PackedItem(path, size, ranked.index(path) + 1 if path in ranked else None, mean.get(path))

    return ContextView(
        ran=True, files=result.get("files", 0), decisions=[_decision(d) for d in decisions],
        rankings=result.get("rankings", []), ranking_failures=result.get("ranking_failures", []),
        ranked=ranked, unranked=result.get("unranked", []), ranking_fallback=result.get("ranking_fallback", ""),
        packed=[item(p["path"], p["tokens"]) for p in result.get("included", [])],
        cut=[item(p, tokens.get(p)) for p in result.get("not_fitting", [])],
        budget_tokens=result.get("budget_tokens", 0), packed_tokens=result.get("packed_tokens", 0),
        window_limit_tokens=result.get("window_limit_tokens"), errors=result.get("errors", []),
        complete=result.get("complete", True),
    )


def _decision(d: ContextDecision) -> FileDecision:
    return FileDecision(d.path, d.status, d.relevant, d.summary, d.tokens, d.detail)


def _runs(event: dict[str, Any]) -> list[Run]:
    runs = []
    for label in ("original", "edited"):
        view = event.get(label)
        if isinstance(view, dict):
            name = "original code" if label == "original" else "edited code"
            runs.append(Run(name, view.get("exit_code"), str(view.get("outcome", "")), str(view.get("output", ""))))
    for view in event.get("runs", []) or []:
        runs.append(Run(str(view.get("label", "")), view.get("exit_code"), str(view.get("outcome", "")),
                        str(view.get("output", ""))))
    return runs


def _turns(messages: list[dict[str, str]], events: dict[int, dict[str, Any]]) -> list[Turn]:
    """Pair each assistant message (call ``k``) with the user message after it and turn ``k``'s event."""
    turns = []
    for k, at in enumerate(range(1, len(messages), 2), start=1):
        event = events.get(k, {})
        answer = messages[at]["content"]
        reply = messages[at + 1]["content"] if at + 1 < len(messages) else ""
        turns.append(Turn(
            number=k, action=str(event.get("action", "?")), model_text=answer, observation=reply,
            applied=event.get("applied"), edits=event.get("edits"), error=event.get("error") or None,
            test=event.get("test") if isinstance(event.get("test"), str) else None, runs=_runs(event),
        ))
    return turns


def _trajectory(store: InstanceSource, record: TrajectoryRecord, spent: dict[str, Spent]) -> TrajectoryView:
    state = json.loads(record.state or "{}")
    messages = state.get("messages", [])
    events = {t.turn: json.loads(t.data) for t in store.turns(record.trajectory_id)}
    patch = None
    if record.kind == "editing" and state.get("draft"):
        from ..edits import make_diff

        originals = {p: t for p, t in (state.get("originals") or {}).items() if t is not None}
        patch = make_diff(originals, state["draft"])
    return TrajectoryView(
        trajectory_id=record.trajectory_id, kind=record.kind, index=record.index, status=record.status,
        failure_kind=record.failure_kind, failure=record.failure,
        opening=messages[0]["content"] if messages else "", turns=_turns(messages, events),
        spent=spent.get(record.trajectory_id, Spent()), test=state.get("test"), patch=patch,
        choice=state.get("choice"),
    )


def _spent_of(r: LedgerRow) -> Spent:
    return Spent(r.calls, r.input_tokens + r.cache_write_tokens, r.output_tokens, r.cache_read_tokens,
                 r.cost_usd, r.unpriced_calls)


def _spent(rows: Sequence[LedgerRow]) -> dict[str, Spent]:
    return {str(r.group[0]): _spent_of(r) for r in rows}


def _grade(store: InstanceSource, iid: str, patch_key: str) -> str | None:
    found = store.get_result(iid, GRADE_STAGE, patch_key)
    return None if found is None else str(found.get("status"))


def _groups(
    store: InstanceSource, iid: str, candidates: list[dict[str, Any]], selection: dict[str, Any] | None
) -> list[Group]:
    from ..edits import normalize_patch, patch_hash

    data = selection["data"] if selection else {}
    ranking = {r["key"]: r for r in data.get("ranking", [])}
    chosen = data.get("key")
    members: dict[str, list[str]] = {}
    patches: dict[str, str] = {}
    for row in candidates:
        if not row["patch"].strip():
            continue
        try:
            key = patch_hash(row["patch"])
            patches.setdefault(key, normalize_patch(row["patch"]))
        except Exception:  # noqa: BLE001 - an unreadable patch is shown as it is, under its stored hash
            key = row["patch_hash"]
            patches.setdefault(key, row["patch"])
        members.setdefault(key, []).append(row["candidate_id"])
    order = [k for k in ranking if k in members] + [k for k in members if k not in ranking]
    return [
        Group(
            key=key, members=members[key], patch=patches[key],
            votes=ranking[key]["votes"] if key in ranking else None,
            changed_lines=ranking[key]["changed_lines"] if key in ranking else None,
            selected=key == chosen or (selection is not None and selection["candidate_id"] in members[key]),
            grade=_grade(store, iid, key),
        )
        for key in order
    ]


def _grid(selection: dict[str, Any] | None, groups: list[Group]) -> Grid | None:
    if selection is None:
        return None
    data = selection["data"]
    columns = [ORIGINAL, *(g.key for g in groups if g.votes is not None)]
    flaky = [(f["test"], f["column"]) for f in data.get("flaky", [])]
    outcomes: dict[str, dict[str, str]] = data.get("outcomes") or {}
    if outcomes:
        return Grid(sorted(outcomes), columns, outcomes, list(data.get("counted_tests", [])), flaky, exact=True)
    ranking = data.get("ranking", [])
    tests = sorted({t for r in ranking for t in r.get("passing_tests", [])} | set(data.get("counted_tests", [])))
    if not tests:
        return None
    cells = {t: {r["key"]: "pass" if t in r.get("passing_tests", []) else "not pass" for r in ranking} for t in tests}
    return Grid(tests, columns[1:], cells, list(data.get("counted_tests", [])), flaky, exact=False)


def _selection(selection: dict[str, Any] | None) -> SelectionView | None:
    if selection is None:
        return None
    data = selection["data"]
    return SelectionView(
        method=selection["method"], candidate_id=selection["candidate_id"], reason=data.get("reason", "") or "",
        trajectory_id=data.get("trajectory"), top_k=list(data.get("top_k", [])),
        skipped_empty=data.get("skipped_empty", 0), skipped_unparsable=data.get("skipped_unparsable", 0),
    )


def _kind_rank(view: TrajectoryView) -> tuple[int, int, str]:
    rank = KIND_ORDER.index(view.kind) if view.kind in KIND_ORDER else len(KIND_ORDER)
    return rank, view.index, view.trajectory_id


def instance_views(store: InstanceSource, instance_ids: Sequence[str]) -> Iterator[InstanceView]:
    """One view at a time (a 500-instance report never holds them all); ids the run lacks are skipped."""
    known = {s["instance_id"]: s for s in store.instance_states()}
    for iid in instance_ids:
        if iid in known:
            yield instance_view(store, iid, known)


def instance_view(store: InstanceSource, instance_id: str, states: dict[str, dict[str, Any]] | None = None) -> InstanceView:
    """Read one instance; ``KeyError`` when the run has no such instance. ``states``: every instance's, when known."""
    states = states if states is not None else {s["instance_id"]: s for s in store.instance_states()}
    if instance_id not in states:
        raise KeyError(instance_id)
    state = states[instance_id]
    spent = _spent(store.ledger(group_by=("trajectory",), instance_id=instance_id))
    total = store.ledger(group_by=(), instance_id=instance_id)
    selection = store.selection(instance_id)
    groups = _groups(store, instance_id, store.candidates(instance_id), selection)
    trajectories = sorted(
        (_trajectory(store, r, spent) for r in store.trajectories(instance_id)), key=_kind_rank
    )
    return InstanceView(
        instance_id=instance_id, stage=state["stage"], status=state["status"],
        failure_kind=state["failure_kind"], failure=state["failure"],
        plan=store.get_result(instance_id, "plan", "generation"),
        context=_context(store, instance_id), trajectories=trajectories, groups=groups,
        grid=_grid(selection, groups), selection=_selection(selection),
        spent=_spent_of(total[0]) if total else Spent(),
        graded=any(g.grade is not None for g in groups),
    )


def column_letter(i: int) -> str:
    """Candidate groups as A, B, ... Z, AA, AB ...; stable labels for the grid and the legend."""
    letters = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        letters = chr(65 + rest) + letters
    return letters
