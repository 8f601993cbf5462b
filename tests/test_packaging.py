"""A non-editable install (the wheel) finds its prompts, configs, image recipes and example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import codemonkeys, codemonkeys.resources as r
from codemonkeys.config import load_config
from codemonkeys.prompting import Prompt
from codemonkeys.examples import example_instance
assert codemonkeys.__file__.startswith(TARGET), codemonkeys.__file__
for name in ("prompts", "configs", "sandbox"):
    assert str(r.resource_dir(name)).startswith(TARGET), name
assert load_config("verified").generation.trajectories == 10
Prompt("generation.j2").render("testing_first")
Prompt("selection.j2")
assert example_instance().instance_id == "codemonkeys-examples__humansize-1"
print("ok")
"""


def test_wheel_install_finds_its_resources(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("codemonkeys-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    result = subprocess.run(
        [sys.executable, "-c", f"TARGET = {str(target)!r}\n" + CHECK],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
    )
    assert result.stdout.strip() == "ok", result.stderr
