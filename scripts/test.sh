#!/usr/bin/env bash
# Install (if needed) and run the whole test suite. CI runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# The HTML report's test opens it in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
    echo "test.sh: could not install chromium; the report's browser test will skip" >&2
fi
set +e
.venv/bin/python -m pytest -q -ra "$@"
status=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure of the suite here.
exit $status
