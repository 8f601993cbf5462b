"""Tiny repository images for end-to-end tests: a base image plus a one-commit repo at /testbed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

# Fixed identity and dates: the same files give the same commit on the host and in an image.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}


def make_host_repo(dest: Path, files: dict[str, str]) -> str:
    """The repo ``build_repo_image`` puts at /testbed, on the host (e.g. as a mirror); returns its commit."""
    for name, text in files.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    env = {**os.environ, **GIT_ENV}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "base"]):
        subprocess.run(argv, cwd=dest, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, check=True, capture_output=True, text=True).stdout.strip()


def build_repo_image(client, base_tag: str, files: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """``base_tag`` with a one-commit git repo of ``files`` at /testbed (built once per content)."""
    import docker.errors

    key = hashlib.sha256((f"v2 {base_tag}" + repr(sorted(files.items()))).encode()).hexdigest()[:12]
    tag = f"codemonkeys/test-repo:{key}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"testbed/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        dockerfile = (
            f"FROM {base_tag}\nCOPY testbed /testbed\nWORKDIR /testbed\n"
            + "RUN git init -q -b main && git add -A && env "
            + " ".join(f"{key}={value}" for key, value in GIT_ENV.items())
            + " git commit -q -m base\n"
        ).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buffer.seek(0)
    client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True)
    return tag
