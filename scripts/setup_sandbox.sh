#!/usr/bin/env bash
# Make this machine able to run sandboxes, idempotently:
#   1. install docker.io, debootstrap, bubblewrap, git, patch, docker-registry (the
#      local registry the official-path tests start themselves; only the missing
#      ones, and only when we may: as root, or with password-less sudo),
#   2. start dockerd in the background when no daemon answers, and wait for it,
#   3. build the base image (debootstrap + docker import, no Docker Hub) and the
#      small test image, unless their tags exist already.
# Without Docker, bubblewrap is the sandbox; with neither, this fails.
# PYTHON=/path/to/python picks the interpreter that has codemonkeys installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python=python3

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

missing=()
for pair in docker:docker.io dockerd:docker.io debootstrap:debootstrap bwrap:bubblewrap \
            git:git patch:patch prlimit:util-linux setpriv:util-linux \
            docker-registry:docker-registry; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "setup_sandbox: installing $packages"
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null; }; then
    echo "setup_sandbox: could not install $packages (needs root or sudo); continuing with what is here" >&2
  fi
fi

if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1; then
  echo "setup_sandbox: starting dockerd"
  log=/tmp/codemonkeys-dockerd.log
  if as_root true 2>/dev/null; then
    as_root sh -c "nohup dockerd >$log 2>&1 &"
    for _ in $(seq 60); do
      docker info >/dev/null 2>&1 && break
      sleep 1
    done
  fi
  docker info >/dev/null 2>&1 || { echo "setup_sandbox: dockerd did not come up" >&2; tail -n 20 "$log" >&2 2>/dev/null || true; }
fi

cd "$here"
if docker info >/dev/null 2>&1; then
  start=$(date +%s)
  "$python" -m codemonkeys.sandbox.baseimage --test
  echo "setup_sandbox: Docker images ready in $(( $(date +%s) - start )) s"
elif command -v bwrap >/dev/null 2>&1 && bwrap --ro-bind / / --unshare-net true 2>/dev/null; then
  echo "setup_sandbox: no Docker daemon; sandboxes will use bubblewrap"
else
  echo "setup_sandbox: neither Docker nor bubblewrap can run here; install one of them" >&2
  exit 1
fi
