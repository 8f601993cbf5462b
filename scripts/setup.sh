#!/usr/bin/env bash
# Install CodeMonkeys into ./.venv and set up a sandbox backend.
# Idempotent: rerunning it only does what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "CodeMonkeys needs Python >= 3.11 (none found on PATH)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".[test,ray]"

# Docker when a daemon answers (or can be started), bubblewrap otherwise.
bash "$ROOT/scripts/setup_sandbox.sh"
echo "codemonkeys installed: $ROOT/.venv/bin/codemonkeys"
