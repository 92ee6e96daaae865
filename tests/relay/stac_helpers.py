"""Helpers for the STAC tests: pystac's validator on the schemas vendored in tests/fixtures/stac-schemas (pystac
fetches extension schemas from the internet otherwise, and there is none here), and the sample photos' facts."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import piexif
import pystac
import pystac.validation
import redis
import requests

from devnode.geotag import read_exif

SCHEMAS = Path(__file__).resolve().parents[1] / "fixtures" / "stac-schemas"
#: schema URI -> vendored file (from stac-extensions/projection v2.0.0 and stac-extensions/raster v1.1.0)
VENDORED = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": "projection-v2.0.0.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "raster-v1.1.0.json",
}


def offline_validator() -> pystac.validation.JsonSchemaSTACValidator:
    """pystac's validator with every schema an item of the relay names already in its cache (the STAC 1.1 core
    schemas ship with pystac; the extensions' are vendored), so validating never goes to the network."""
    validator = pystac.validation.JsonSchemaSTACValidator()
    for uri, name in VENDORED.items():
        validator.schema_cache[uri] = json.loads((SCHEMAS / name).read_text())
    return validator


def validate_item(body: dict[str, Any]) -> pystac.Item:
    item = pystac.Item.from_dict(body)
    pystac.validation.validate_dict(body, validator=offline_validator())
    return item


def photo_positions(photos: list[Path]) -> list[tuple[float, float]]:
    """(longitude, latitude) of each photo, from its EXIF."""
    tags = [read_exif(photo).geotag for photo in photos]
    return [(tag.longitude, tag.latitude) for tag in tags if tag is not None]


def capture_times(photos: list[Path]) -> list[dt.datetime]:
    """DateTimeOriginal of each photo (the samples carry no offset: UTC)."""
    times = []
    for photo in photos:
        raw = piexif.load(str(photo))["Exif"][piexif.ExifIFD.DateTimeOriginal].decode()
        times.append(dt.datetime.strptime(raw, "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.UTC))
    return times


def stac_get(url: str, token: str | None = None, headers: dict[str, str] | None = None,
             **params: Any) -> requests.Response:
    if token is not None:
        params["token"] = token
    return requests.get(url, params=params, headers=headers, timeout=30)


FACTS_AT_MOST = 16 * 1024  # bytes of state store a described task may take (facts only: no thumbnail)


def assert_state_store_holds_no_thumbnail(data_dir: Path, uuid: str, redis_url: str | None = None) -> None:
    """The relay's state store keeps the task's facts (a few KB), not its thumbnail (that is in the results store):
    SQLite's `facts` table has no column for one and the task's row is small; in Redis (prefix odx:) no thumb: key
    is left and the keys named by the task take little memory."""
    if redis_url is None:
        with sqlite3.connect(data_dir / "relay.sqlite3") as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(facts)")}
            (size,), = db.execute("SELECT length(data) FROM facts WHERE uuid = ?", (uuid,))
        assert columns == {"uuid", "owner", "west", "south", "east", "north", "start_ms", "end_ms", "data"}
        assert size < FACTS_AT_MOST, size
        return
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match="odx:thumb:*"))
        keys = list(client.scan_iter(match=f"odx:*{uuid}*"))
        assert b"odx:facts:" + uuid.encode() in keys
        used = sum(client.memory_usage(key) or 0 for key in keys)
        assert used < FACTS_AT_MOST, used
    finally:
        client.close()
