"""OpenSfM-shaped files: the partial project a split-merge parent seeds, and what a reconstruction makes.

These are the files ODM's split-merge moves between the parent and the `sm-cluster` (see `devnode.seed`):
the parent writes each submodel's `opensfm/exif/<photo>.exif`, `camera_models.json` and
`reference_lla.json` (one reference for the whole flight, so the submodels share a frame); a node running
round one answers with features, matches, `reconstruction.json`, `tracks.csv` and `cameras.json`.
Their content follows OpenSfM's layout in outline only (positions from GPS, no real features): what
matters here is that the right files travel both ways.
"""
from __future__ import annotations

import json
import statistics
import zipfile
from pathlib import Path

from devnode.products import Photo, _cameras, _focal_ratio, _make_model, _open_photo, transform_points, utm_epsg
from shared.assets import ALL_ZIP

EXIF_FOLDER = "opensfm/exif"
CAMERA_MODELS = "opensfm/camera_models.json"
REFERENCE_LLA = "opensfm/reference_lla.json"


def open_photos(images: list[Path]) -> list[Photo]:
    """The readable photos among `images` (side files and non-photos left out)."""
    return [photo for photo in map(_open_photo, images) if photo is not None]


def reference_lla(photos: list[Photo]) -> dict:
    """OpenSfM's reference: the mean position of the geotagged photos (altitude 0 without any)."""
    tags = [p.exif.geotag for p in photos if p.exif.geotag is not None]
    if not tags:
        return {"latitude": 0.0, "longitude": 0.0, "altitude": 0.0}
    altitudes = [t.altitude for t in tags if t.altitude is not None]
    return {"latitude": statistics.fmean(t.latitude for t in tags),
            "longitude": statistics.fmean(t.longitude for t in tags),
            "altitude": statistics.fmean(altitudes) if altitudes else 0.0}


def write_partial_project(project: Path, photos: list[Photo], reference: dict) -> None:
    """What ODM's split stage leaves in a submodel's `opensfm/` before round one."""
    exif = project / EXIF_FOLDER
    exif.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        (exif / f"{photo.path.name}.exif").write_text(json.dumps(_exif_entry(photo)))
    (project / CAMERA_MODELS).write_text(json.dumps(_cameras(photos), indent=2))
    (project / REFERENCE_LLA).write_text(json.dumps(reference))


def build_reconstruction(images: list[Path], task_dir: Path) -> Path:
    """Round one's products under `task_dir/assets` zipped to `task_dir/all.zip`; the zip.

    The reference is the seeded `reference_lla.json` when there is one (the parent's), else these photos'.
    Raises ValueError when no input is a readable photo, as `build_outputs` does."""
    photos = open_photos(images)
    if not photos:
        raise ValueError("no readable JPEG or TIFF photo among the inputs")
    seeded = task_dir / REFERENCE_LLA
    reference = json.loads(seeded.read_text()) if seeded.is_file() else reference_lla(photos)
    files: dict[str, bytes] = {}
    for photo in photos:
        files[f"opensfm/features/{photo.path.name}.features.npz"] = b"devnode: no real features\n"
        files[f"opensfm/matches/{photo.path.name}_matches.pkl.gz"] = b"devnode: no real matches\n"
    files["opensfm/reconstruction.json"] = json.dumps([_reconstruction(photos, reference)]).encode()
    tracks = ["OPENSFM_TRACKS_VERSION_v2"] + [f"{p.path.name}\t{i}\t0\t0.5\t0.5\t0.01\t128\t128\t128\t-1\t-1"
                                              for i, p in enumerate(photos)]
    files["opensfm/tracks.csv"] = ("\n".join(tracks) + "\n").encode()
    files["cameras.json"] = json.dumps(_cameras(photos), indent=2).encode()
    task_dir.mkdir(parents=True, exist_ok=True)
    target = task_dir / ALL_ZIP
    partial = target.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    partial.replace(target)
    return target


def _exif_entry(photo: Photo) -> dict:
    exif, tag = photo.exif, photo.exif.geotag
    entry = {"make": exif.make or "unknown", "model": exif.model or "unknown", "width": photo.width,
             "height": photo.height, "projection_type": "perspective", "focal_ratio": _focal_ratio(photo),
             "camera": _camera_key(photo)}
    if tag is not None:
        entry["gps"] = {"latitude": tag.latitude, "longitude": tag.longitude,
                        "altitude": tag.altitude if tag.altitude is not None else 0.0, "dop": 10.0}
    return entry


def _camera_key(photo: Photo) -> str:
    return f"{_make_model(photo)} {photo.width} {photo.height} perspective {_focal_ratio(photo):.4f}"


def _reconstruction(photos: list[Photo], reference: dict) -> dict:
    """One OpenSfM reconstruction: every geotagged photo a shot at its GPS position, in metres from the
    reference (a local east/north frame; UTM offsets stand in for OpenSfM's topocentric ones)."""
    epsg = utm_epsg(reference["latitude"], reference["longitude"])
    (ref_x, ref_y), = transform_points([(reference["longitude"], reference["latitude"])], 4326, epsg)
    tagged = [p for p in photos if p.exif.geotag is not None]
    projected = transform_points([(p.exif.geotag.longitude, p.exif.geotag.latitude) for p in tagged], 4326, epsg)
    shots = {}
    for photo, (x, y) in zip(tagged, projected):
        altitude = photo.exif.geotag.altitude or 0.0
        shots[photo.path.name] = {"camera": _camera_key(photo), "rotation": [3.141592653589793, 0.0, 0.0],
                                  "translation": [-(x - ref_x), y - ref_y, altitude - reference["altitude"]],
                                  "gps_position": [x - ref_x, y - ref_y, altitude - reference["altitude"]],
                                  "gps_dop": 10.0}
    return {"cameras": _cameras(photos), "shots": shots, "points": {},
            "reference_lla": reference}
