"""`seed.zip` and the two rounds of split-merge: what the parent sends, and what a node makes of it.

ODM's split-merge (`opendm/remote.py`) sends each submodel to the `sm-cluster` twice, each time with its
photos, a `seed.zip` holding part of the submodel's project, `skipPostProcessing` and an `outputs` list:

- round one, the reconstruction: the seed holds `opensfm/exif`, `opensfm/camera_models.json`,
  `opensfm/reference_lla.json` and an empty `opensfm/split_merge_stop_at_reconstruction.txt`, which makes
  the node's ODM stop after OpenSfM; the parent asks back for the features, matches, reconstruction,
  tracks and `cameras.json`;
- round two, the toolchain: the seed holds the reconstruction (and empty marker files standing for
  features, matches and exif, so that ODM skips them); the parent asks back for orthophoto, DEMs, report
  and the georeferenced point cloud.

NodeODX unpacks `seed.zip` into the task's project folder before anything runs (`libs/taskNew.js`), so
a development node that gets one does the same and then runs only that round's stages. Unpacking takes
only members that stay inside the folder and stops at `MAX_SEED_BYTES` unpacked.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from shared.assets import safe_member
from shared.inputs import SEED

#: Most bytes a seed may unpack to (a real one is a few megabytes of JSON and small files).
MAX_SEED_BYTES = 1024 ** 3
#: The marker that stops ODM after the reconstruction (round one).
STOP_AT_RECONSTRUCTION = "opensfm/split_merge_stop_at_reconstruction.txt"
#: Present in round two's seed: the reconstruction is done, the toolchain runs from it.
RECONSTRUCTION = "opensfm/reconstruction.json"


class SeedRefused(ValueError):
    """A seed.zip that cannot be unpacked; the message becomes the task's error."""


class Round(Enum):
    """Which part of the pipeline a task runs, from what its project folder holds."""

    WHOLE = "whole"
    RECONSTRUCTION = "reconstruction"
    TOOLCHAIN = "toolchain"


@dataclass(frozen=True)
class RoundPlan:
    """What the parent puts in the seed of one round and what it asks back (ODM's lists, verbatim)."""

    round: Round
    seed_paths: tuple[str, ...]
    touch_files: tuple[str, ...]
    outputs: tuple[str, ...]


RECONSTRUCTION_ROUND = RoundPlan(
    Round.RECONSTRUCTION,
    seed_paths=("opensfm/exif", "opensfm/camera_models.json", "opensfm/reference_lla.json"),
    touch_files=(STOP_AT_RECONSTRUCTION,),
    outputs=("opensfm/matches", "opensfm/features", "opensfm/reconstruction.json", "opensfm/tracks.csv",
             "cameras.json"),
)
TOOLCHAIN_ROUND = RoundPlan(
    Round.TOOLCHAIN,
    seed_paths=("opensfm/camera_models.json", "opensfm/reference_lla.json", "opensfm/reconstruction.json",
                "opensfm/tracks.csv"),
    touch_files=("opensfm/features/empty", "opensfm/matches/empty", "opensfm/exif/empty"),
    outputs=("odm_orthophoto/odm_orthophoto.tif", "odm_orthophoto/cutline.gpkg",
             "odm_orthophoto/odm_orthophoto_cut.tif", "odm_orthophoto/odm_orthophoto_feathered.tif",
             "odm_dem", "odm_report", "odm_georeferencing", "odm_georeferencing_25d"),
)


def output_matches(name: str, outputs: list[str] | tuple[str, ...]) -> bool:
    """Whether a project-relative file `name` is one of `outputs` or inside one of its folders, as
    NodeODX archives them (a path, or a folder with everything below it)."""
    return any(name == p.rstrip("/") or name.startswith(p.rstrip("/") + "/") for p in outputs)


def make_seed(project: Path, plan: RoundPlan) -> Path:
    """`project/seed.zip` with the plan's files that exist (folders whole) and its empty marker files,
    paths relative to the project, as ODM's `create_seed_payload` writes it."""
    target = project / SEED
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in plan.seed_paths:
            path = project / relative
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if file.is_file():
                    archive.write(file, file.relative_to(project).as_posix())
        for relative in plan.touch_files:
            archive.writestr(relative, "")
    return target


def unpack_seed(seed: Path, project: Path) -> list[str]:
    """Unpack `seed` into `project` (NodeODX's handleSeed) and delete it; the member names unpacked.

    Members whose names would leave the folder are skipped. Raises SeedRefused for a file that is not a
    zip or unpacks to more than MAX_SEED_BYTES (the task then fails, as on NodeODX)."""
    unpacked: list[str] = []
    try:
        with zipfile.ZipFile(seed) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and safe_member(m.filename)]
            if sum(m.file_size for m in members) > MAX_SEED_BYTES:
                raise SeedRefused(f"seed.zip unpacks to more than {MAX_SEED_BYTES // 1024 ** 2} MB")
            for member in members:
                target = project / member.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as data, target.open("wb") as out:
                    shutil.copyfileobj(data, out, 1024 * 1024)
                unpacked.append(member.filename)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SeedRefused(f"Could not extract seed.zip ({exc})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(seed)
    return unpacked


def project_round(project: Path) -> Round:
    """The round a task's project folder asks for: ODM stops after OpenSfM when the marker is there and
    resumes after it when a reconstruction is."""
    if (project / STOP_AT_RECONSTRUCTION).is_file():
        return Round.RECONSTRUCTION
    if (project / RECONSTRUCTION).is_file():
        return Round.TOOLCHAIN
    return Round.WHOLE
