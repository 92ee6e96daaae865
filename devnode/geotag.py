"""Where and with what a photo was taken, from its EXIF (piexif).

Drone photos carry their position in EXIF GPS tags; the development node places photos by that alone.
Real-world files are messy (no EXIF, a GPS block with no fix, zero denominators, truncated segments),
so every reader here answers "unknown" rather than raising.

Photos without a usable position go to `FALLBACK_LOCATION`: the site of NodeODX's own test dataset
(Brighton, near Duluth, Minnesota: 46.8425 N, 91.9942 W, 198.6 m), where a real NodeODX in test mode
puts its outputs whatever it was sent. A photo there is recognisably "not placed by its GPS".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import piexif

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeoTag:
    """A WGS84 position; altitude in metres above sea level, None when the photo does not say."""

    latitude: float
    longitude: float
    altitude: float | None = None


@dataclass(frozen=True)
class PhotoExif:
    """What the node reports about a photo: position and the camera facts images.json lists."""

    geotag: GeoTag | None = None
    make: str | None = None
    model: str | None = None
    focal_length: float | None = None
    focal_length_35mm: float | None = None


FALLBACK_LOCATION = GeoTag(latitude=46.8425, longitude=-91.9942, altitude=198.6)


def read_exif(path: Path) -> PhotoExif:
    """The photo's EXIF facts; empty when the file has no readable EXIF."""
    try:
        exif = piexif.load(str(path))
    except Exception as exc:  # noqa: BLE001  piexif raises many types on garbled or foreign files
        log.info("no readable EXIF in %s: %s", path.name, exc)
        return PhotoExif()
    zeroth, sub = exif.get("0th") or {}, exif.get("Exif") or {}
    return PhotoExif(
        geotag=_geotag(exif.get("GPS") or {}),
        make=_text(zeroth.get(piexif.ImageIFD.Make)),
        model=_text(zeroth.get(piexif.ImageIFD.Model)),
        focal_length=_number(sub.get(piexif.ExifIFD.FocalLength)),
        focal_length_35mm=_number(sub.get(piexif.ExifIFD.FocalLengthIn35mmFilm)),
    )


def read_geotag(path: Path) -> GeoTag | None:
    """The photo's GPS position, or None when it has none worth trusting."""
    return read_exif(path).geotag


def _geotag(gps: dict) -> GeoTag | None:
    latitude = _degrees(gps.get(piexif.GPSIFD.GPSLatitude), gps.get(piexif.GPSIFD.GPSLatitudeRef), b"S")
    longitude = _degrees(gps.get(piexif.GPSIFD.GPSLongitude), gps.get(piexif.GPSIFD.GPSLongitudeRef), b"W")
    if latitude is None or longitude is None:
        return None
    # Cameras without a fix often write 0/0 rather than leaving the tags out.
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude == 0 and longitude == 0):
        return None
    altitude = _number(gps.get(piexif.GPSIFD.GPSAltitude))
    if altitude is not None and gps.get(piexif.GPSIFD.GPSAltitudeRef) == 1:
        altitude = -altitude
    return GeoTag(latitude, longitude, altitude)


def _degrees(dms: object, ref: object, negative_ref: bytes) -> float | None:
    if not isinstance(dms, (tuple, list)) or len(dms) != 3:
        return None
    parts = [_number(part) for part in dms]
    if any(part is None for part in parts):
        return None
    value = parts[0] + parts[1] / 60 + parts[2] / 3600
    if isinstance(ref, str):
        ref = ref.encode()
    return -value if isinstance(ref, bytes) and ref.upper().startswith(negative_ref) else value


def _number(value: object) -> float | None:
    """An EXIF rational (a pair) or integer as a float; None for 0-denominators and junk."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        numerator, denominator = value
        if not isinstance(numerator, int) or not isinstance(denominator, int) or denominator == 0:
            return None
        return numerator / denominator
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ").strip() or None
