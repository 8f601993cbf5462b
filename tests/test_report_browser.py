"""The run report opened in headless Chromium: the charts are laid out with their data points, and seen.

Chromium comes from Debian (``scripts/setup_sandbox.sh`` installs it). The
tests skip only when no chromium binary exists or it cannot load even a
trivial page here; a report that Chromium can't render fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from html import unescape
from pathlib import Path

import pytest
from report_support import fill_run

from codemonkeys.ensemble.load import LabelStatus
from codemonkeys.report.data import ReportData, gather
from codemonkeys.report.grades import CandidateGrades
from codemonkeys.report.html import write
from codemonkeys.store import RunStore

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
)
# Measures what the browser laid out: per chart, its size and how many marks have a non-empty box.
PROBE = """<script>
addEventListener('load', () => {
  const out = {};
  for (const svg of document.querySelectorAll('svg.chart')) {
    const box = svg.getBoundingClientRect();
    const marks = [...svg.querySelectorAll('[data-series]')];
    out[svg.id] = {width: box.width, height: box.height, marks: marks.length,
                   drawn: marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; }).length};
  }
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium binary on PATH (scripts/setup_sandbox.sh installs Debian's chromium)")
    return found


def run_chromium(binary: str, profile: Path, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A chromium that can render a trivial page here, and its profile directory."""
    binary = chromium_binary()
    root = tmp_path_factory.mktemp("chromium")
    page = root / "hello.html"
    page.write_text("<p id=hello>hello</p>")
    try:
        result = run_chromium(binary, root / "profile", ["--dump-dom", page.as_uri()])
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium cannot run here: {exc}")
    if 'id="hello"' not in result.stdout:
        pytest.skip(f"chromium cannot render a trivial page here (exit {result.returncode}): {result.stderr[-500:]}")
    return binary, root / "profile"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportData, Path]:
    root = tmp_path_factory.mktemp("report")
    with RunStore.open(root / "run") as store:
        info = fill_run(store, editing_model="oracle-noisy:0.3")
        grades = CandidateGrades(by_candidate={k: LabelStatus(v) for k, v in info["labels"].items()}, sources=["labels"])
        data = gather(store, str(root / "run"), grades=grades)
    return data, write(data, root / "report.html")


def test_the_charts_render_with_their_data_points(browser: tuple[str, Path], report: tuple[ReportData, Path]) -> None:
    binary, profile = browser
    data, page = report
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = run_chromium(binary, profile, ["--dump-dom", probed.as_uri()])
    dom = result.stdout
    assert "<svg" in dom, result.stderr[-2000:]

    def marks(chart: str, series: str | None = None) -> list[str]:
        wanted = re.escape(series) if series else '[^"]+'
        pattern = rf'<(?:rect|circle|path)\b[^>]*data-chart="{chart}"[^>]*data-series="{wanted}"[^>]*>'
        return re.findall(pattern, dom)

    grading = data.grading
    assert grading is not None and grading.fit is not None
    points = marks("coverage", "coverage")
    assert len(points) == len(grading.curve) == 8
    values = [float(re.search(r'data-value="([^"]+)"', p).group(1)) for p in points]  # type: ignore[union-attr]
    assert values == pytest.approx([c for _, c in grading.curve], rel=1e-5)
    assert len(marks("coverage", "fit")) == 1 and len(marks("coverage", "selected")) == 1
    assert len(marks("cost")) == len(data.spend)
    assert len(marks("tokens")) == sum(
        1 for s in data.spend_by_stage for v in (s.input_tokens, s.cache_read_tokens, s.cache_write_tokens, s.output_tokens) if v
    )
    assert len(marks("failures")) == sum(len(kinds) for kinds in data.failures.values())
    assert len(marks("selection")) == 3
    assert 'id="oracle-banner"' in dom

    probe = json.loads(unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL).group(1)))  # type: ignore[union-attr]
    assert set(probe) == {"cost", "tokens", "failures", "coverage", "selection"}
    for chart, seen in probe.items():
        assert seen["width"] > 300 and seen["height"] > 50, chart
        assert seen["marks"] > 0 and seen["drawn"] == seen["marks"], chart


def test_the_screenshot_shows_the_charts(browser: tuple[str, Path], report: tuple[ReportData, Path]) -> None:
    from PIL import Image

    binary, profile = browser
    _, page = report
    shot = page.with_name("report.png")
    result = run_chromium(binary, profile, ["--window-size=1000,2600", f"--screenshot={shot}", page.as_uri()])
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        assert pixels.size == (1000, 2600)
        colors = pixels.getcolors(maxcolors=1 << 20)
    assert colors is not None
    counts = {rgb: n for n, rgb in colors}
    total = sum(counts.values())
    assert counts.get((255, 255, 255), 0) < 0.95 * total  # not a blank page
    # the fill colors of the charts are on screen in solid areas, not just an edge pixel
    for hex_color in ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b00020"):
        rgb = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 100, hex_color
