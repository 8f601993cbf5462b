#!/usr/bin/env bash
# Install (if needed) and run the whole test suite. CI runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# The real-model tests serve SmolLM2 with llama-cpp-python from ./.venv-llm (built from source once,
# ~15 CPU-minutes, then reused from pip's wheel cache). Under CI=true those tests fail without it.
bash "$ROOT/scripts/setup_llm_server.sh" >/dev/null ||
  echo "test.sh: could not install the real-model server (.venv-llm); tests/test_real_model.py will say so" >&2
# The HTML report's test opens it in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
    echo "test.sh: could not install chromium; the report's browser test will skip" >&2
fi
# Types first: configured in pyproject.toml ([tool.mypy]); fails the suite like a test.
.venv/bin/python -m mypy --python-executable .venv/bin/python
set +e
.venv/bin/python -m pytest -q -ra "$@"
status=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure of the suite here.
exit $status
