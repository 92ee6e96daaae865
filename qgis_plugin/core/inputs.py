"""What to send: the files of a task, under the names NodeODX recognises them by.

NodeODX knows a file's role only by its name (`shared.inputs` holds its rule: `*.txt` and
`align.tif|las|laz` are side files, everything else is a photo). The dialog lets the user pick side files
with any name, so some files travel under another name than they have on disk; `stage` gives them that
name without copying where the system allows a link. All names must be unique on the server, so two
different files that would arrive under one name are refused here, naming both.

From a folder the plugin takes photos by suffix and side files only under the exact names NodeODX looks
for: NodeODX would take any `notes.txt` as a GCP file, which is not what a user who picks a folder means.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..deps import shared

InputKind = shared.inputs.InputKind
#: Photo formats ODM reads; what the plugin picks up from a folder or accepts as a photo.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".png", ".dng")
GCP_NAME, GEO_NAME, GROUPS_NAME = shared.inputs.GCP_LIST, shared.inputs.GEO, shared.inputs.IMAGE_GROUPS
#: Alignment files the user may pick; `.tiff` travels as `align.tif`, the only raster name NodeODX takes.
ALIGN_SUFFIXES = shared.inputs.ALIGN_SUFFIXES + (".tiff",)


class InputError(ValueError):
    """The inputs cannot make a task; the message says which file and why."""


@dataclass(frozen=True)
class Upload:
    source: Path
    name: str

    @property
    def is_photo(self) -> bool:
        """Whether the node will count this file as an image (by the name it is sent under)."""
        return shared.inputs.is_photo(self.name)


@dataclass(frozen=True)
class Skipped:
    """A file found in the folder of images that is not sent, and why (told to the user before the run)."""

    path: Path
    reason: str


@dataclass
class UploadPlan:
    uploads: list[Upload] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Folders searched for photos (the folder of images and each sub-folder), for the summary before the run.
    folders_searched: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def image_count(self) -> int:
        """What the node will report as `imagesCount`, and what the client checks against `maxImages`."""
        return shared.inputs.count_photos(self.names())

    @property
    def total_bytes(self) -> int:
        return sum(u.source.stat().st_size for u in self.uploads)

    def names(self) -> list[str]:
        return [u.name for u in self.uploads]

    def photos(self) -> list[Upload]:
        return [u for u in self.uploads if u.is_photo]


def is_side_file_name(name: str) -> bool:
    """A side file under a name NodeODX looks for: the ones worth taking from a folder of photos."""
    kind = shared.inputs.classify(name)
    return kind in (InputKind.GEO, InputKind.IMAGE_GROUPS, InputKind.ALIGN) or (
        kind is InputKind.GCP and name.lower() == GCP_NAME)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _existing_file(value: str | os.PathLike, what: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} is not a file that exists")
    return path


def plan_upload(images: Iterable[str | os.PathLike] = (), folder: str | os.PathLike | None = None,
                rasters: Iterable[str | os.PathLike] = (), align: str | os.PathLike | None = None,
                gcp: str | os.PathLike | None = None, geo: str | os.PathLike | None = None,
                image_groups: str | os.PathLike | None = None, recursive: bool = True) -> UploadPlan:
    """Collect and name every file of a task; raise InputError in words when they cannot make one.

    A folder is searched with its sub-folders (`recursive`), as cameras keep photos in `DCIM/100MEDIA`,
    `DCIM/101MEDIA`, ...; side files are taken from the folder itself only."""
    plan = UploadPlan()
    by_name: dict[str, Upload] = {}

    def add(source: Path, name: str, explicit: bool = True) -> None:
        key = name.lower()
        previous = by_name.get(key)
        if previous is not None:
            if previous.source.resolve() == source.resolve():
                return
            if not explicit:  # a side file picked in the dialog wins over one found in the folder
                plan.notes.append(f"{source} ignored: {previous.source} is sent as {name}")
                plan.skipped.append(Skipped(source, f"{previous.source} is sent as {name} instead"))
                return
            raise InputError(f"two different files would both be sent as {name!r}: {previous.source} and "
                             f"{source}; NodeODX needs every file name to be unique, so rename one")
        by_name[key] = Upload(source, name)

    for value in images:
        path = _existing_file(value, "image")
        if not (is_image_name(path.name) or is_side_file_name(path.name)):
            raise InputError(f"{path.name} is not a photo NodeODX can read "
                             f"(it takes {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)})")
        add(path, path.name)
    for value in rasters:
        path = _existing_file(value, "raster layer file")
        add(path, path.name)
    side = [(gcp, GCP_NAME, "ground control point file"), (geo, GEO_NAME, "geolocation file"),
            (image_groups, GROUPS_NAME, "image groups file")]
    for value, name, what in side:
        if value:
            add(_existing_file(value, what), name)
    if align:
        path = _existing_file(align, "alignment file")
        suffix = path.suffix.lower()
        if suffix not in ALIGN_SUFFIXES:
            raise InputError(f"the alignment file {path.name} must be a GeoTIFF, LAS or LAZ file")
        add(path, "align" + (".tif" if suffix == ".tiff" else suffix))
    if folder:
        _add_folder(Path(folder).expanduser(), add, plan, recursive)

    plan.uploads = list(by_name.values())
    _check_counts(plan, folder)
    return plan


def _folder_files(folder: Path, recursive: bool, searched: list[Path] | None = None) -> list[Path]:
    """The files in `folder` (and its sub-folders), hidden ones and hidden folders left out, in a stable order.
    Each folder looked into is appended to `searched`."""
    searched = [] if searched is None else searched
    if not recursive:
        searched.append(folder)
        return [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    found = []
    for top, dirs, files in os.walk(folder):
        searched.append(Path(top))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(top) / f for f in sorted(files) if not f.startswith(".")]
    return found


def _add_folder(folder: Path, add, plan: UploadPlan, recursive: bool = True) -> None:
    if not folder.is_dir():
        raise InputError(f"image folder {str(folder)!r} is not a folder that exists")
    skipped, renamed = 0, 0
    taken: set[str] = set()
    for path in _folder_files(folder, recursive, plan.folders_searched):
        nested = path.parent != folder
        if is_image_name(path.name):
            name = path.name
            if name.lower() in taken:  # DCIM/100MEDIA/DJI_0001.JPG and DCIM/101MEDIA/DJI_0001.JPG: both sent
                name = "_".join(path.relative_to(folder).parts)
                renamed += 1
            taken.add(name.lower())
            add(path, name, explicit=False)
        elif is_side_file_name(path.name) and not nested:
            add(path, path.name, explicit=False)
        else:
            skipped += 1
            why = ("a side file in a sub-folder (only the folder's own are taken)"
                   if is_side_file_name(path.name) else "neither a photo nor a NodeODX side file")
            plan.skipped.append(Skipped(path, why))
    where = f"{folder} and its sub-folders" if recursive else str(folder)
    if renamed:
        plan.notes.append(f"{renamed} photo(s) in sub-folders of {folder} share a name with another photo and "
                          "are sent under their folder's name (for example 101MEDIA_DJI_0001.JPG)")
    if skipped:
        plan.notes.append(f"{skipped} file(s) in {where} are neither photos nor NodeODX side files "
                          "and stay behind")


def _check_counts(plan: UploadPlan, folder: str | os.PathLike | None) -> None:
    count = plan.image_count
    minimum = shared.options.MIN_IMAGES
    if count == 0:
        where = f" (the folder {folder} has none)" if folder else ""
        raise InputError(f"No images to process{where}: choose at least {minimum} photos, "
                         "or a folder that holds them")
    if count < minimum:
        raise InputError(f"Only {count} image given; NodeODX needs at least {minimum} overlapping photos "
                         "to reconstruct anything")


def stage(plan: UploadPlan, staging: Path) -> list[Path]:
    """Paths to upload, each with the name the server must see; renamed files become links in `staging`.

    A link costs nothing; where links are not allowed (some Windows accounts) the file is copied."""
    files = []
    for upload in plan.uploads:
        if upload.source.name == upload.name:
            files.append(upload.source)
            continue
        staging.mkdir(parents=True, exist_ok=True)
        target = staging / upload.name
        try:
            target.symlink_to(upload.source.resolve())
        except OSError:
            shutil.copyfile(upload.source, target)
        files.append(target)
    return files


def default_task_name(plan: UploadPlan) -> str:
    """A name when the user gives none: the folder most photos come from, and how many there are."""
    folders = [u.source.parent.name for u in plan.uploads if u.is_photo]
    common = max(set(folders), key=folders.count) if folders else ""
    return f"{common or 'Photos'} ({plan.image_count} images)"
