"""Runs the shapes pipeline in its own process, so a test can kill -9 it (see test_crash_resume.py).

Usage: python crash_driver.py RUN_DIR MIRRORS IMAGE COMMIT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from codemonkeys.config import load_config
from codemonkeys.export import export_predictions
from codemonkeys.pipeline.build import open_services
from codemonkeys.pipeline.run import choose_instances, run_instances
from codemonkeys.sandbox.base import EnvironmentRef
from pipeline_support import FixedEnvironment, base_overrides, shapes_instance

ISSUES = ("area(w, h) returns w*w; it should be w*h.", "The area of a 2 by 3 rectangle comes out as 4, not 6.")


def main() -> None:
    run_dir, mirrors, image, commit = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    instances = [shapes_instance(commit, n, issue) for n, issue in enumerate(ISSUES, start=1)]
    config = load_config(None, [
        "models.relevance.model=oracle", "models.ranking.model=oracle",
        "models.testing.model=oracle-noisy:0.5", "models.editing.model=oracle-noisy:0.5",
        "models.selection.model=oracle", "generation.trajectories=4", "max_concurrent_instances=2",
        *base_overrides(mirrors),
    ])
    env = FixedEnvironment(EnvironmentRef(key=f"shapes-{image}", image=image, python="python3"))
    with open_services(config, run_dir, instances, {}, environments=env) as services:
        chosen = choose_instances(services.store, instances, retry_infra=False)
        asyncio.run(run_instances(services, chosen.run))
        export_predictions(services.store, run_dir / "all_preds.jsonl", model_name="crash-test", allow_oracle=True)


if __name__ == "__main__":
    main()
