"""Where ELLA's real release images are on the controller, for the molecule scenarios.

    python release_images.py 1.16.5 1.17.2-fault.never-healthy

prints one JSON object, {"1.16.5": "/.../ella-release-v1.16.5.sif", ...}: the images that
testbed/ella-image/build.py builds from ELLA's source archives, cached by content (the
sandbox's one rule, ella_deploy.sandbox.build_ella_images: $ELLA_IMAGE_CACHE, else
.cache/ella-images in the checkout). Instant when they were built before; a cold build takes
minutes, as root, with the network. "X.Y.Z-fault.NAME" is release X.Y.Z built with the fault
NAME (testbed/ella-image/faults).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ella_deploy.sandbox import build_ella_images  # noqa: E402


def release_images(names: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    plain = [name for name in names if "-fault." not in name]
    if plain:
        found.update((version, str(path)) for version, path in build_ella_images(plain).items())
    for name in names:
        if "-fault." in name:
            version, fault = name.split("-fault.", 1)
            found[name] = str(build_ella_images([version], fault=fault)[version])
    return found


if __name__ == "__main__":
    print(json.dumps(release_images(sys.argv[1:])))
