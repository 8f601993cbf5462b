"""Render a terminal capture (``tmux capture-pane -e -p``: text with ANSI colours) to SVG and PNG.

    python scripts/screen_png.py CAPTURE.txt OUT.png --width 80 --title "80x24"

rich draws the text as an SVG terminal window; headless Chromium screenshots it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("capture", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=80)
    parser.add_argument("--title", default="codemonkeys run")
    args = parser.parse_args()
    console = Console(record=True, width=args.width, force_terminal=True, color_system="truecolor", file=open("/dev/null", "w"))
    lines = args.capture.read_text(encoding="utf-8", errors="replace").rstrip("\n").split("\n")
    for line in lines:
        console.print(Text.from_ansi(line), no_wrap=True, crop=True, soft_wrap=False)
    svg = console.export_svg(title=args.title)
    svg_path = args.png.with_suffix(".svg")
    svg_path.write_text(svg, encoding="utf-8")
    html = args.png.with_suffix(".html")
    html.write_text(f"<html><body style='margin:0;background:#fff'>{svg}</body></html>", encoding="utf-8")
    width = int(args.width * 12.3) + 60
    height = int(len(lines) * 24.5) + 120
    binary = shutil.which("chromium") or "chromium"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", f"--screenshot={args.png}", html.as_uri()],
            capture_output=True, timeout=120, check=False,
        )
    html.unlink()


if __name__ == "__main__":
    main()
