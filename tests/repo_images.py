"""Tiny repository images for end-to-end tests: a base image plus a one-commit repo at /testbed."""

from __future__ import annotations

import hashlib
import io
import tarfile


def build_repo_image(client, base_tag: str, files: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """``base_tag`` with a one-commit git repo of ``files`` at /testbed (built once per content)."""
    import docker.errors

    key = hashlib.sha256((base_tag + repr(sorted(files.items()))).encode()).hexdigest()[:12]
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
            "RUN git init -q -b main && git add -A && git -c user.name=t -c user.email=t@t commit -q -m base\n"
        ).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buffer.seek(0)
    client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True)
    return tag
