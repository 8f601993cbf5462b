#!/usr/bin/env bash
# Install (if needed) and run the whole test suite. CI runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
set +e
.venv/bin/python -m pytest -q -ra "$@"
status=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure of the suite here.
exit $status
