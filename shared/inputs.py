"""What NodeODX makes of each file of a task: a photo, or a side file it sets apart, by name alone.

NodeODX reads no file's content to decide; it looks at names only, once all files are in the task's
`images/` folder (NodeODX 2.3.1, `libs/taskNew.js` createTask and `libs/Task.js` initialize):

1. `seed.zip` (exactly that name, case-sensitive: `entry === "seed.zip"`) is moved to the project folder
   and unpacked there; it never counts against `maxImages`.
2. `maxImages` is checked against every file still in `images/`, side files included
   (`count_against_max_images`), so it counts more than `imagesCount` does.
3. `*.txt` (`/\\.txt$/i`) and `align.las|laz|tif` (`/^align\\.(las|laz|tif)$/i`) move to `gcp/`; any other
   `*.zip` (`/\\.zip$/i`, so `SEED.ZIP` too) is deleted.
4. Everything left in `images/` is an image: `imagesCount` is its length, whatever the suffix.
5. In `gcp/`, `geo.txt` is the geolocation file, `image_groups.txt` the image groups, any other `*.txt`
   a GCP file (the first one is used), `align.*` the alignment file. All these tests ignore case.

So `align.tiff` is an image to NodeODX (only `.tif` is an alignment file), `notes.txt` is a GCP file, and
`GEO.TXT` is the geolocation file. One more NodeODX path is left out on purpose: a file uploaded under
the name `zipurl.zip` is unpacked into `images/` as if it came from `zipurl`; its members are photos this
module cannot see by name, so it counts here as discarded.

The client (before upload), the relay (`--max-images`, the image count it stores), the plugin (what it
tells the user) and the development node (what it moves aside) all ask this module, so they agree with
each other and with the node.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from enum import Enum
from pathlib import PurePath


class InputKind(Enum):
    """The role NodeODX gives a file of a task, from its name."""

    PHOTO = "photo"
    GCP = "gcp"                    # any *.txt but the two below: ground control points
    GEO = "geo"                    # geo.txt: image geolocation
    IMAGE_GROUPS = "image_groups"  # image_groups.txt
    ALIGN = "align"                # align.tif, align.las, align.laz: the alignment reference
    SEED = "seed"                  # seed.zip: a previous run's folders, unpacked into the project
    DISCARDED = "discarded"        # any other *.zip: deleted before processing


#: The names NodeODX looks for, as a client should send them.
GCP_LIST = "gcp_list.txt"  # NodeODX takes any *.txt; this is the name ODM's own docs and tools use
GEO = "geo.txt"
IMAGE_GROUPS = "image_groups.txt"
SEED = "seed.zip"
#: Suffixes of an alignment file, which NodeODX takes only as `align<suffix>` (`.tiff` is not one).
ALIGN_SUFFIXES = (".tif", ".las", ".laz")

# NodeODX's regular expressions with its `i` flag (its `g` flag changes nothing for one test); JavaScript's
# `$` is Python's `\Z` (Python's `$` would also match before a final newline).
_TXT = re.compile(r"\.txt\Z", re.IGNORECASE)
_ALIGN = re.compile(r"^align\.(las|laz|tif)\Z", re.IGNORECASE)
_ZIP = re.compile(r"\.zip\Z", re.IGNORECASE)
_GEO = re.compile(r"^geo\.txt\Z", re.IGNORECASE)
_IMAGE_GROUPS = re.compile(r"^image_groups\.txt\Z", re.IGNORECASE)


def classify(name: str | os.PathLike) -> InputKind:
    """The role NodeODX gives a file uploaded under `name` (a path is reduced to its file name)."""
    base = (name if isinstance(name, PurePath) else PurePath(os.fspath(name))).name
    if base == SEED:
        return InputKind.SEED
    if _TXT.search(base):
        if _GEO.search(base):
            return InputKind.GEO
        if _IMAGE_GROUPS.search(base):
            return InputKind.IMAGE_GROUPS
        return InputKind.GCP
    if _ALIGN.search(base):
        return InputKind.ALIGN
    if _ZIP.search(base):
        return InputKind.DISCARDED
    return InputKind.PHOTO


def is_photo(name: str | os.PathLike) -> bool:
    """Whether NodeODX counts the file as an image."""
    return classify(name) is InputKind.PHOTO


def count_photos(names: Iterable[str | os.PathLike]) -> int:
    """How many of the files NodeODX will count as images (`imagesCount` once the task is set up)."""
    return sum(1 for name in names if is_photo(name))


def count_against_max_images(names: Iterable[str | os.PathLike]) -> int:
    """How many of the files NodeODX holds against its `maxImages`: all but `seed.zip`, side files included
    (the check runs before they are moved aside). A task over the limit is accepted, then fails."""
    return sum(1 for name in names if classify(name) is not InputKind.SEED)
