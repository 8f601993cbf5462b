"""The report of a stored pipeline run opened in headless Chromium: index, filters, an instance page.

The run is real (three shapes instances, oracle models, containers) plus one
instance recorded as failed in the context stage, so the filters have
something to filter. Screenshots land in the test's tmp dir and, when the
directory exists, in /work/wt/screens/ for the lead's note.
"""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import pytest

from codemonkeys.cli.main import run as cli
from codemonkeys.store import RunStore
from inspect_support import stored_run  # noqa: F401
from pipeline_support import shapes  # noqa: F401
from sandbox_support import docker_client  # noqa: F401
from test_report_browser import browser, run_chromium  # noqa: F401

pytestmark = pytest.mark.docker

SCREENS = Path("/work/wt/screens")
FAILED = "local__shapes-99"
PAGE_PROBE = """<script>
addEventListener('load', () => {
  const box = e => { const b = e.getBoundingClientRect(); return {w: b.width, h: b.height}; };
  const grid = document.getElementById('matrix-grid');
  const first = document.querySelector('details.trajectory[open]');
  const turns = first ? [...first.querySelectorAll('.turn')] : [];
  const out = {grid: grid ? box(grid) : null,
               cells: [...document.querySelectorAll('#matrix-grid td.cell')].map(c => [c.dataset.outcome, box(c).w > 0]),
               trajectory: first ? first.id : null,
               turns: turns.map(t => [t.dataset.turn, box(t).h])};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def report(stored_run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:  # type: ignore[no-untyped-def]
    run_dir, ids = stored_run
    with RunStore.open_existing(run_dir) as store:
        store.add_instance(FAILED, "local/shapes", {"instance_id": FAILED})
        store.set_instance_state(FAILED, "context", "failed", "infra", "RepoError: clone failed")
    out = tmp_path_factory.mktemp("pages") / "report.html"
    assert cli(["report", str(run_dir), "--output", str(out)]) == 0
    return out, ids


def _probe(dom: str) -> dict:  # type: ignore[type-arg]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    return json.loads(unescape(found.group(1)))  # type: ignore[no-any-return]


def _shot(binary: str, profile: Path, page: str, shot: Path, size: str) -> None:
    run_chromium(binary, profile, [f"--window-size={size}", f"--screenshot={shot}", page])
    assert shot.is_file() and shot.stat().st_size > 10_000, shot
    if SCREENS.is_dir():
        shutil.copy(shot, SCREENS / shot.name)


def test_index_links_to_instance_pages_that_draw_the_grid_and_the_turns(browser, report) -> None:  # type: ignore[no-untyped-def]
    binary, profile = browser
    index, ids = report
    dom = run_chromium(binary, profile, ["--dump-dom", index.as_uri()]).stdout
    links = dict(re.findall(r'<a href="(report\.instances/[^"]+)">([^<]+)</a>', dom))
    assert sorted(links.values()) == sorted([*ids, FAILED])

    # follow the first instance's link, as a reader would
    href = next(h for h, iid in links.items() if iid == ids[0])
    page = Path(urljoin(index.as_uri(), href).removeprefix("file://"))
    assert page.is_file()
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PAGE_PROBE + "</body>"), encoding="utf-8")
    seen = _probe(run_chromium(binary, profile, ["--dump-dom", probed.as_uri()]).stdout)
    assert seen["grid"]["w"] > 100 and seen["grid"]["h"] > 20
    outcomes = [o for o, drawn in seen["cells"] if drawn]
    assert len(outcomes) == len(seen["cells"]) >= 3
    assert "fixed" in outcomes and "not_fixed" in outcomes  # the gold candidate fixes, the wrong one does not
    assert seen["trajectory"].endswith("testing-0")
    assert len(seen["turns"]) >= 2 and all(height > 10 for _, height in seen["turns"])
    assert "← all instances" in page.read_text(encoding="utf-8")

    _shot(binary, profile, page.as_uri(), index.with_name("instance-page.png"), "1100,2400")
    _shot(binary, profile, index.as_uri(), index.with_name("report-index.png"), "1000,3000")


def test_the_instance_list_filters_by_status_and_failure_kind(browser, report) -> None:  # type: ignore[no-untyped-def]
    binary, profile = browser
    index, ids = report

    def shown(query: str) -> list[str]:
        dom = run_chromium(binary, profile, ["--dump-dom", index.as_uri() + query]).stdout
        rows = re.findall(r'<tr class="instance-row"([^>]*)><td><a href="[^"]+">([^<]+)</a>', dom)
        assert len(rows) == len(ids) + 1, dom[-1500:]
        return sorted(iid for attrs, iid in rows if "hidden" not in attrs)

    assert shown("") == sorted([*ids, FAILED])
    assert shown("?kind=infra") == [FAILED]
    assert shown("?status=done") == sorted(ids)
    assert shown("?status=done&kind=infra") == []
