"""``env du`` and ``env prune``: pure rules over image lists, and one run on images this test makes."""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid

import pytest

from codemonkeys.env.inventory import ImageInfo, disk_usage, kind_of, own_bytes, prune_plan

P = "cm"


def img(id_: str, tag: str, size: int, layers: str, *, created: int = 0, containers: int = 0, **labels: str) -> ImageInfo:
    return ImageInfo(id_, (tag,), {f"codemonkeys.{k}": v for k, v in labels.items()}, size, 0, containers, created, tuple(layers))


BASE = img("b", f"{P}/base:x", 100, "a")
BUILDER = img("bu", f"{P}/builder:x", 300, "ab")
PY = img("p", f"{P}/python:3.9-x", 400, "abc")
ENV_OLD = img("e1", f"{P}/env.django__django-3.0:old", 900, "abcd", created=1, key="k-old")
ENV_NEW = img("e2", f"{P}/env.django__django-3.0:new", 950, "abce", created=2, key="k-new")
INST_OLD = img("i1", f"{P}/sweb.eval.x86_64.django__django-1:old", 910, "abcdf", created=1, instance_id="django__django-1", env_key="k-old")
INST_NEW = img("i2", f"{P}/sweb.eval.x86_64.django__django-1:new", 960, "abceg", created=2, instance_id="django__django-1", env_key="k-new")
OTHER = img("o", "someone/else:1", 50, "z")
OFFICIAL = img("s", "swebench/sweb.eval.x86_64.django_1776_django-1:latest", 2000, "xy")
ALL = [BASE, BUILDER, PY, ENV_OLD, ENV_NEW, INST_OLD, INST_NEW, OTHER, OFFICIAL]


def test_kinds() -> None:
    assert [kind_of(i, P) for i in ALL] == ["base", "base", "python", "env", "env", "instance", "instance", None, "official"]
    assert kind_of(img("x", f"{P}/standin.django__django-1:k", 1, "q"), P) == "standin"


def test_disk_per_kind_counts_each_layer_once() -> None:
    assert own_bytes(PY, ALL) == 100 and own_bytes(INST_NEW, ALL) == 10 and own_bytes(BASE, ALL) == 100
    usage = disk_usage(ALL, P)
    assert usage["base"].layer_bytes == 300 and usage["base"].images == 2
    assert usage["python"].layer_bytes == 100
    assert usage["env"].layer_bytes == 500 + 550 and usage["instance"].layer_bytes == 10 + 10
    assert usage["official"].layer_bytes == 2000
    # Two tags of one image: counted once.
    twin = img("i2b", f"{P}/sweb.eval.x86_64.django__django-1:twin", 960, "abceg")
    assert disk_usage([*ALL, twin], P)["instance"].layer_bytes == 20


def test_prune_removes_superseded_images_only() -> None:
    plan = prune_plan(ALL, P)
    assert {item.image.id for item in plan.remove} == {"i1", "e1"}
    # An image a container uses stays, and so does the env it is built on.
    plan = prune_plan([*ALL[:5], img("i1", INST_OLD.tags[0], 910, "abcdf", created=1, containers=1,
                                     instance_id="django__django-1", env_key="k-old"), INST_NEW], P)
    assert {item.image.id for item in plan.remove} == set()
    # --instances: every instance image; then the old env has no user and goes too. Never base/python/others.
    plan = prune_plan(ALL, P, instances=True)
    assert {item.image.id for item in plan.remove} == {"i1", "i2", "e1"}
    assert not {"b", "bu", "p", "o", "s"} & {item.image.id for item in plan.remove}


@pytest.mark.docker
def test_prune_and_du_on_images_this_test_makes(capsys: pytest.CaptureFixture[str]) -> None:
    """Tiny images under a prefix of this test's own: prune removes the superseded one and nothing else."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker daemon: {exc}")
    from codemonkeys.cli.main import main

    prefix = f"cm-prunetest-{uuid.uuid4().hex[:8]}"
    made = []
    try:
        for n, (key, iid) in enumerate([("old", "x__y-1"), ("new", "x__y-1")]):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                data = f"{key}\n".encode()
                info = tarfile.TarInfo(f"{key}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            buffer.seek(0)
            client.api.import_image_from_data(
                buffer.getvalue(), repository=f"{prefix}/sweb.eval.x86_64.{iid}", tag=key,
                changes=[f"LABEL codemonkeys.instance_id={iid}", f"LABEL codemonkeys.key={key}"],
            )
            made.append(f"{prefix}/sweb.eval.x86_64.{iid}:{key}")
            if n == 0:
                time.sleep(1.1)  # creation times are in seconds: "new" must be newer
        main(["env", "du", "--json", "--set", f"environment.image_prefix={prefix}"])
        du = json.loads(capsys.readouterr().out)
        assert du["instance"]["images"] == 2
        main(["env", "prune", "--json", "--set", f"environment.image_prefix={prefix}"])
        dry = json.loads(capsys.readouterr().out)
        assert len(dry["remove"]) == 1 and dry["removed"] == []
        main(["env", "prune", "--json", "--yes", "--set", f"environment.image_prefix={prefix}"])
        done = json.loads(capsys.readouterr().out)
        assert len(done["removed"]) == 1
        left = [t for t in made if client.images.list(name=t)]
        assert left == [made[1]]
    finally:
        for tag in made:
            try:
                client.images.remove(tag, force=True)
            except Exception:  # noqa: BLE001 - removed by the test
                pass
