#!/usr/bin/env bash
# Make this machine able to run sandboxes, idempotently:
#   1. install docker.io, debootstrap, bubblewrap, git, patch (only the missing ones),
#   2. start dockerd in the background when no daemon answers, and wait for it,
#   3. build the base image (debootstrap + docker import, no Docker Hub) and
#      the small test image, unless their tags exist already.
# Usage: .ci/setup_sandbox.sh   (PYTHON=/path/to/python to pick the interpreter
# that has the codemonkeys package installed; default: python3 on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

missing=()
for pair in docker:docker.io dockerd:docker.io debootstrap:debootstrap bwrap:bubblewrap \
            git:git patch:patch prlimit:util-linux setpriv:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "setup_sandbox: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup_sandbox: starting dockerd"
  nohup dockerd >/var/log/codemonkeys-dockerd.log 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "setup_sandbox: dockerd did not come up; last log lines:" >&2
    tail -n 20 /var/log/codemonkeys-dockerd.log >&2 || true
    exit 1
  fi
fi

cd "$here"
start=$(date +%s)
"$python" -m codemonkeys.sandbox.baseimage --test
echo "setup_sandbox: images ready in $(( $(date +%s) - start )) s"
