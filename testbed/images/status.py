"""Whether the node image is there and current, without building anything."""

from __future__ import annotations

from enum import StrEnum

from testbed.errors import CapabilityError
from testbed.images.common import BASE_IMAGE, LABEL, NODE_IMAGE, SOURCE_HASH_LABEL, engine_client, find_image
from testbed.images.source import repo_root, source_hash


class ImageStatus(StrEnum):
    CURRENT = "current"
    STALE = "stale"
    MISSING = "missing"  # also when no engine answers


def node_image_present() -> bool:
    """Whether the engine has the node image (False also when no engine answers)."""
    try:
        engine = engine_client(timeout=10)
    except CapabilityError:
        return False
    return find_image(engine, NODE_IMAGE) is not None


def node_image_current() -> bool:
    """Whether the node image holds this checkout's code and pinned dependencies, on the base it was
    built from as that base is now (False when it is missing or no engine answers)."""
    try:
        engine = engine_client(timeout=10)
        root = repo_root()
    except CapabilityError:
        return False
    image = find_image(engine, NODE_IMAGE)
    if image is None:
        return False
    labels = image.labels or {}
    base = find_image(engine, labels.get(LABEL + "base-image", BASE_IMAGE))
    if base is None:
        return False
    return labels.get(SOURCE_HASH_LABEL) == source_hash(root, base.id)


def images_status() -> ImageStatus:
    """The node image against this checkout: current, stale (rebuild it) or missing."""
    if node_image_current():
        return ImageStatus.CURRENT
    return ImageStatus.STALE if node_image_present() else ImageStatus.MISSING
