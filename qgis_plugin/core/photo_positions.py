"""Where each photo was taken, from its EXIF GPS tags, read through GDAL (always there in QGIS, unlike
Pillow): "where the photos are", shown on the map before they are sent.

GDAL reports EXIF as metadata strings (`EXIF_GPSLatitude` = "(52) (28) (25.2133)"). Real files are messy
(no EXIF, a GPS block with no fix, 0/0 written for "unknown"), so a photo whose position cannot be read is
reported as without one, never as an error.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class PhotoPosition:
    """A photo's camera position: WGS 84 degrees, altitude in metres above sea level (None if not given),
    capture time as EXIF writes it ("2024:05:04 10:00:00", "" if not given)."""

    path: Path
    latitude: float
    longitude: float
    altitude: float | None = None
    taken: str = ""


@dataclass
class PhotoSurvey:
    positions: list[PhotoPosition] = field(default_factory=list)
    without_gps: list[Path] = field(default_factory=list)

    def log_lines(self) -> list[str]:
        lines = [f"{len(self.positions)} photo(s) have a GPS position in their EXIF."]
        if self.without_gps:
            names = ", ".join(p.name for p in self.without_gps[:20])
            more = f" and {len(self.without_gps) - 20} more" if len(self.without_gps) > 20 else ""
            lines.append(f"{len(self.without_gps)} photo(s) have no GPS position: {names}{more}.")
        return lines


def _numbers(text: str | None) -> list[float]:
    return [float(n) for n in _NUMBER.findall(text or "")]


def _degrees(value: str | None, ref: str | None, negative: str) -> float | None:
    parts = _numbers(value)
    if not parts or len(parts) > 3:
        return None
    degrees = sum(part / 60 ** i for i, part in enumerate(parts))
    return -degrees if (ref or "").strip().upper().startswith(negative) else degrees


def position_from_metadata(path: Path, metadata: Mapping[str, str]) -> PhotoPosition | None:
    """The position in GDAL's EXIF metadata of `path`, or None when it has none worth trusting."""
    latitude = _degrees(metadata.get("EXIF_GPSLatitude"), metadata.get("EXIF_GPSLatitudeRef"), "S")
    longitude = _degrees(metadata.get("EXIF_GPSLongitude"), metadata.get("EXIF_GPSLongitudeRef"), "W")
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude == 0 and longitude == 0):
        return None  # cameras without a fix often write 0/0 rather than leaving the tags out
    altitudes = _numbers(metadata.get("EXIF_GPSAltitude"))
    altitude = altitudes[0] if len(altitudes) == 1 else None
    if altitude is not None and (metadata.get("EXIF_GPSAltitudeRef") or "").strip() in ("1", "0x01", "0x1"):
        altitude = -altitude  # below sea level
    taken = (metadata.get("EXIF_DateTimeOriginal") or metadata.get("EXIF_DateTime") or "").strip()
    return PhotoPosition(path, latitude, longitude, altitude, taken)


def read_metadata(path: Path) -> dict[str, str]:
    """GDAL's metadata of a photo (EXIF_* keys for JPEG and TIFF); empty when GDAL cannot open it.
    Only the header is read, not the pixels."""
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        dataset = gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_READONLY)
        return dict(dataset.GetMetadata() or {}) if dataset is not None else {}
    except RuntimeError:  # GDAL with exceptions on (another plugin may have turned them on)
        return {}
    finally:
        gdal.PopErrorHandler()


def survey(photos: Iterable[str | Path]) -> PhotoSurvey:
    """Read the position of each photo; those without one are listed by path."""
    result = PhotoSurvey()
    for value in photos:
        path = Path(value)
        position = position_from_metadata(path, read_metadata(path))
        if position is None:
            result.without_gps.append(path)
        else:
            result.positions.append(position)
    return result
