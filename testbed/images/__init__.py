"""Node images for the Docker backend, built without a registry and without network in the build.

Three steps, each skipped when its result is current:

1. The base image ``voip-testbed-base:bookworm`` (unless a base is given): ``containers/build-base.sh``
   makes a Debian bookworm root file system with mmdebstrap from a Debian mirror and imports it with
   ``docker import``. It is rebuilt when that script changes (label ``org.voip-testbed.base-recipe``).
2. The wheelhouse: ``pip wheel`` of the project and its dependencies on the host (PyPI is reachable from
   the host, not needed by the build), pinned to the versions installed in this environment.
3. ``docker build`` of ``containers/Dockerfile`` in a temporary context holding the Dockerfile and the
   wheelhouse; on our own base with ``network_mode=none``, which proves the build is offline.

The node image's label ``org.voip-testbed.source-hash`` is a hash of everything that goes into it (the
project's files, the Dockerfile, the base image's id, the pinned versions, the Python version); a build
whose hash matches the existing image is skipped before any wheel is built, and ``images_status`` tells
whether the image still matches this checkout. ``testbed images build`` / ``status`` call these.
"""

from testbed.images.common import BASE_IMAGE, NODE_IMAGE, ImageBuildError, ImageInfo
from testbed.images.node import build_images
from testbed.images.source import repo_root, source_hash
from testbed.images.status import ImageStatus, images_status, node_image_current, node_image_present
from testbed.images.wheelhouse import pinned_requirements

__all__ = [
    "BASE_IMAGE",
    "NODE_IMAGE",
    "ImageBuildError",
    "ImageInfo",
    "ImageStatus",
    "build_images",
    "images_status",
    "node_image_current",
    "node_image_present",
    "pinned_requirements",
    "repo_root",
    "source_hash",
]
