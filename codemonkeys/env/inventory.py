"""What environment images are on this machine, by layer kind, and which of them no run needs.

Pure functions over the image list ``docker system df`` gives (each image's
tags, labels, size, shared size and container count), so ``env du`` and
``env prune`` are tested without building anything. Kinds follow the
layers of :mod:`.plan`: ``base`` (debootstrap base and builder),
``python``, ``env`` (one per repo version), ``instance``; plus ``standin``
(official-layout stand-ins, :mod:`.standin`) and ``official`` (pulled
``sweb.eval`` images).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("base", "python", "env", "instance", "standin", "official")


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """One image as ``docker system df`` reports it."""

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    shared_size: int
    containers: int
    created: int = 0
    layers: tuple[str, ...] = ()  # RootFS diff ids, bottom first (from ``docker image inspect``)

    @classmethod
    def from_df(cls, item: Mapping[str, Any], layers: Iterable[str] = ()) -> ImageInfo:
        shared = item.get("SharedSize")
        return cls(
            id=str(item["Id"]),
            tags=tuple(t for t in (item.get("RepoTags") or []) if t != "<none>:<none>"),
            labels=dict(item.get("Labels") or {}),
            size=int(item.get("Size") or 0),
            shared_size=int(shared) if isinstance(shared, int) and shared > 0 else 0,
            containers=int(item.get("Containers") or 0) if (item.get("Containers") or 0) > 0 else 0,
            created=int(item.get("Created") or 0),
            layers=tuple(layers),
        )

    @property
    def unique_size(self) -> int:
        """Bytes only this image holds (its own layers): what removing it frees."""
        return max(self.size - self.shared_size, 0)


def kind_of(image: ImageInfo, prefix: str) -> str | None:
    """The layer kind of one of our images, or ``None`` for an image that is not ours."""
    for tag in image.tags:
        repository = tag.rpartition(":")[0]
        name = repository.rsplit("/", 1)[-1]
        if repository.startswith(f"{prefix}/"):
            if name in ("base", "builder"):
                return "base"
            for kind in ("python", "env", "standin"):
                if name == kind or name.startswith(f"{kind}."):
                    return kind
            if name.startswith("sweb.eval."):
                return "instance"
        elif name.startswith("sweb.eval.x86_64."):
            return "official"
    return None


@dataclass
class KindUsage:
    images: int = 0
    layer_bytes: int = 0  # what this kind's own layers take on disk (each layer counted once)
    total_bytes: int = 0  # the images' full sizes (shared layers counted in each)


def own_bytes(image: ImageInfo, others: Iterable[ImageInfo]) -> int:
    """Bytes of the layers ``image`` adds on top of its nearest ancestor image (the longest layer prefix)."""
    parent_size = 0
    best = 0
    for other in others:
        n = len(other.layers)
        if other.id != image.id and 0 < n < len(image.layers) and image.layers[:n] == other.layers and n > best:
            best, parent_size = n, other.size
    return max(image.size - parent_size, 0)


def disk_usage(images: Iterable[ImageInfo], prefix: str) -> dict[str, KindUsage]:
    """Disk per kind: image count, bytes of the kind's own layers, and the images' full sizes.

    Images with the same layers (two tags, or a pulled copy of a pushed
    image) count their layers once, in the first kind listed in ``KINDS``.
    """
    every = list(images)
    usage = {kind: KindUsage() for kind in KINDS}
    seen: set[tuple[str, ...]] = set()
    ours = [(image, kind_of(image, prefix)) for image in every]
    for image, kind in sorted(((i, k) for i, k in ours if k is not None), key=lambda pair: KINDS.index(pair[1])):
        assert kind is not None
        usage[kind].images += 1
        usage[kind].total_bytes += image.size
        key = image.layers or (image.id,)
        if key in seen:
            continue
        seen.add(key)
        usage[kind].layer_bytes += own_bytes(image, every)
    return usage


@dataclass(frozen=True, slots=True)
class PruneItem:
    image: ImageInfo
    kind: str
    reason: str


@dataclass
class PrunePlan:
    remove: list[PruneItem] = field(default_factory=list)
    keep: int = 0

    @property
    def freed_bytes(self) -> int:
        return sum(item.image.unique_size for item in self.remove)


def prune_plan(images: Iterable[ImageInfo], prefix: str, *, instances: bool = False, standins: bool = False) -> PrunePlan:
    """What no run needs: superseded instance images, env images no instance is built on, and (asked for) more.

    * An instance image is superseded when a newer one of the same instance
      id exists (a recipe or spec changed: a run would use the newer key).
    * An env image is stale when no remaining instance image names its key
      (label ``codemonkeys.env_key``) and a newer env image of the same repo
      version exists.
    * ``instances``: every instance image (rebuilt on top of its env in
      seconds to minutes); ``standins``: every stand-in.
    * Never: an image a container uses, base and Python layers (every env
      needs them), images that are not ours.
    """
    ours = [(image, kind_of(image, prefix)) for image in images]
    ours = [(image, kind) for image, kind in ours if kind is not None]
    plan = PrunePlan()
    removed: set[str] = set()

    def drop(image: ImageInfo, kind: str, reason: str) -> None:
        if image.containers:
            return
        plan.remove.append(PruneItem(image, kind, reason))
        removed.add(image.id)

    newest: dict[str, ImageInfo] = {}
    for image, kind in ours:
        if kind == "instance":
            iid = image.labels.get("codemonkeys.instance_id", image.tags[0].rpartition(":")[0] if image.tags else image.id)
            if iid not in newest or image.created > newest[iid].created:
                newest[iid] = image
    for image, kind in ours:
        if kind == "instance":
            iid = image.labels.get("codemonkeys.instance_id", image.tags[0].rpartition(":")[0] if image.tags else image.id)
            if instances:
                drop(image, kind, "instance image (--instances)")
            elif newest[iid].id != image.id:
                drop(image, kind, f"superseded by a newer image of {iid}")
        elif kind == "standin" and standins:
            drop(image, kind, "stand-in (--standins)")
    needed_envs = {
        image.labels.get("codemonkeys.env_key", "")
        for image, kind in ours
        if kind == "instance" and image.id not in removed
    }
    newest_env: dict[str, ImageInfo] = {}
    for image, kind in ours:
        if kind == "env" and image.tags:
            repository = image.tags[0].rpartition(":")[0]
            if repository not in newest_env or image.created > newest_env[repository].created:
                newest_env[repository] = image
    for image, kind in ours:
        if kind != "env" or not image.tags:
            continue
        repository = image.tags[0].rpartition(":")[0]
        if image.labels.get("codemonkeys.key") not in needed_envs and newest_env[repository].id != image.id:
            drop(image, kind, "superseded env layer no instance image uses")
    plan.keep = len(ours) - len(plan.remove)
    return plan


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def images_from(client: Any) -> list[ImageInfo]:
    """Every image a Docker client reports (``docker system df``), with its layers; the one read the rest works on."""
    infos = []
    for item in client.df().get("Images") or []:
        layers = client.api.inspect_image(item["Id"]).get("RootFS", {}).get("Layers") or []
        infos.append(ImageInfo.from_df(item, layers))
    return infos
