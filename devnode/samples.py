"""Small geotagged drone photos of a synthetic scene, for tests and the demo.

The flight is over Tempelhofer Feld, Berlin (the former airport, now an open park): centred on
SAMPLE_LATITUDE 52.4740 N, SAMPLE_LONGITUDE 13.4030 E, ground at 45 m above sea level, flown at
90 m above ground (GPS altitude 135 m) on north-south lawnmower lines. The outputs are therefore in
WGS 84 / UTM zone 33N (EPSG:32633).

Each photo is the view of one shared synthetic landscape (fields, paths, trees, roofs) from its camera
position, computed on the same UTM grid and with the same camera geometry the development node
assumes, so its orthophoto mosaic lines up into one coherent picture rather than a jumble.

Usage: python -m devnode.samples DEST [--count N] [--seed S]
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

from devnode.products import FLIGHT_HEIGHT_M, flight_grid, footprint_size, transform_points, utm_epsg

SAMPLE_LATITUDE = 52.4740
SAMPLE_LONGITUDE = 13.4030
SAMPLE_GROUND_ALTITUDE = 45.0
SAMPLE_EPSG = utm_epsg(SAMPLE_LATITUDE, SAMPLE_LONGITUDE)

WIDTH, HEIGHT = 640, 480
FOCAL_MM, FOCAL_35MM = 4.5, 24
MAKE, MODEL = "ODX Relay", "Synthetic Survey Camera"
#: Line spacing and spacing along a line: about 60 % side and 65 % forward overlap at 90 m.
ACROSS_M, ALONG_M = 50.0, 35.0
_START = datetime.datetime(2024, 5, 4, 10, 0, 0)
_SECONDS_BETWEEN_SHOTS = 3

_FIELD_COLOURS = np.array([(196, 178, 104), (92, 140, 62), (112, 86, 60), (142, 170, 82),
                           (178, 150, 72), (120, 150, 70)], np.float32)
_PATH_COLOUR = np.array((172, 166, 156), np.float32)
_TREE_COLOUR = np.array((38, 78, 34), np.float32)
_ROOF_COLOUR = np.array((150, 62, 50), np.float32)
_FIELD_SIZE = (40.0, 30.0)
_TREE_CELL = 12.0
_TABLE = 64


def make_samples(dest: Path, count: int = 12, seed: int = 0) -> list[Path]:
    """Write `count` geotagged JPEGs into `dest` (created if needed); the same seed gives the same files."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scene = _Scene(rng)
    (centre_x, centre_y), = transform_points([(SAMPLE_LONGITUDE, SAMPLE_LATITUDE)], 4326, SAMPLE_EPSG)
    paths = []
    for index, (east, north) in enumerate(flight_grid(count, ACROSS_M, ALONG_M)):
        east, north = east + rng.normal(0, 1.0), north + rng.normal(0, 1.0)
        height = FLIGHT_HEIGHT_M + rng.normal(0, 0.5)
        pixels = scene.photo(east, north, height, rng)
        (longitude, latitude), = transform_points([(centre_x + east, centre_y + north)], SAMPLE_EPSG, 4326)
        path = dest / f"IMG_{index + 1:04d}.JPG"
        exif = _exif(latitude, longitude, SAMPLE_GROUND_ALTITUDE + height, index)
        Image.fromarray(pixels).save(path, "JPEG", quality=80, exif=exif)
        paths.append(path)
    return paths


class _Scene:
    """A landscape in metres east/north of the site centre; random tables make it vary by seed."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.field = rng.integers(0, len(_FIELD_COLOURS), (_TABLE, _TABLE))
        self.tree = rng.random((_TABLE, _TABLE)) < 0.3
        self.tree_offset = rng.uniform(3, _TREE_CELL - 3, (_TABLE, _TABLE, 2))
        self.tree_radius = rng.uniform(2.0, 4.5, (_TABLE, _TABLE))
        self.roofs = [(*rng.uniform(-80, 80, 2), *rng.uniform(8, 20, 2)) for _ in range(4)]

    def photo(self, east: float, north: float, height: float, rng: np.random.Generator) -> np.ndarray:
        """What a nadir, north-up camera at (east, north), `height` m above ground, sees (uint8 RGB)."""
        ground_width, ground_height = footprint_size(height, FOCAL_35MM, WIDTH, HEIGHT)
        x = east + (np.arange(WIDTH) + 0.5 - WIDTH / 2) * ground_width / WIDTH
        y = north - (np.arange(HEIGHT) + 0.5 - HEIGHT / 2) * ground_height / HEIGHT
        x, y = np.meshgrid(x, y)
        rgb = self._colour(x, y) + rng.normal(0, 5, (HEIGHT, WIDTH, 1))
        return np.clip(rgb, 0, 255).astype(np.uint8)

    def _colour(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        fx, fy = np.floor(x / _FIELD_SIZE[0]).astype(int), np.floor(y / _FIELD_SIZE[1]).astype(int)
        rgb = _FIELD_COLOURS[self.field[fx % _TABLE, fy % _TABLE]]
        rows = 0.92 + 0.08 * np.sin(2 * np.pi * (x + 0.3 * y) / 3.0)  # crop rows
        rgb = rgb * rows[..., None]
        on_path = (np.mod(x, _FIELD_SIZE[0]) < 2.0) | (np.mod(y, _FIELD_SIZE[1]) < 2.0)
        rgb[on_path] = _PATH_COLOUR
        for left, bottom, width, depth in self.roofs:
            rgb[(x >= left) & (x < left + width) & (y >= bottom) & (y < bottom + depth)] = _ROOF_COLOUR
        self._trees(x, y, rgb)
        return rgb

    def _trees(self, x: np.ndarray, y: np.ndarray, rgb: np.ndarray) -> None:
        """Round crowns, one at most per lattice cell, darker towards the edge."""
        cx, cy = np.floor(x / _TREE_CELL).astype(int), np.floor(y / _TREE_CELL).astype(int)
        ix, iy = cx % _TABLE, cy % _TABLE
        dx = x - (cx * _TREE_CELL + self.tree_offset[ix, iy, 0])
        dy = y - (cy * _TREE_CELL + self.tree_offset[ix, iy, 1])
        reach = np.hypot(dx, dy) / self.tree_radius[ix, iy]
        crown = self.tree[ix, iy] & (reach < 1)
        rgb[crown] = _TREE_COLOUR * (1.25 - 0.5 * reach[crown, None])


def _exif(latitude: float, longitude: float, altitude: float, index: int) -> bytes:
    taken = _START + datetime.timedelta(seconds=index * _SECONDS_BETWEEN_SHOTS)
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: MAKE, piexif.ImageIFD.Model: MODEL},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: taken.strftime("%Y:%m:%d %H:%M:%S"),
                 piexif.ExifIFD.FocalLength: (int(FOCAL_MM * 100), 100),
                 piexif.ExifIFD.FocalLengthIn35mmFilm: FOCAL_35MM},
        "GPS": {piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
                piexif.GPSIFD.GPSLatitudeRef: b"N" if latitude >= 0 else b"S",
                piexif.GPSIFD.GPSLatitude: _dms(latitude),
                piexif.GPSIFD.GPSLongitudeRef: b"E" if longitude >= 0 else b"W",
                piexif.GPSIFD.GPSLongitude: _dms(longitude),
                piexif.GPSIFD.GPSAltitudeRef: 0,
                piexif.GPSIFD.GPSAltitude: (round(altitude * 100), 100)},
    })


def _dms(value: float) -> tuple[tuple[int, int], ...]:
    """Degrees as EXIF's three rationals, to 1/10000 of a second (about 3 mm)."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round(((value - degrees) * 60 - minutes) * 60 * 10_000)
    return (degrees, 1), (minutes, 1), (seconds, 10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write small geotagged sample drone photos.")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in make_samples(args.dest, args.count, args.seed):
        print(path)


if __name__ == "__main__":
    main()
