"""Completed tasks without result facts are described by the housekeeping's backfill: those of a store from before
the facts (SQLite and Redis, upgraded on start), and one whose reading was cut short by a kill -9 (its facts due, not
recorded), read from the results store once the node is gone. A store from when thumbnails were kept beside the facts
drops them on start, and the thumbnail is made again from the archived zip when asked for. And the real NodeODX's
all.zip (test mode: a few files, several of them empty): the item is valid and says what its results lack."""
from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from testkit import nodeodx
from testkit.relay import Relay, start_relay
from tests.relay.relay_helpers import COMPLETED, submit, wait_for, wait_status
from tests.relay.stac_helpers import assert_state_store_holds_no_thumbnail, photo_positions, validate_item

pytestmark = pytest.mark.slow

TOKEN = "stac-backfill-token"
ITEMS = "/stac/collections/odx-tasks/items"


def item(relay: Relay, uuid: str) -> dict[str, Any]:
    response = requests.get(relay.url + f"{ITEMS}/{uuid}", params={"token": TOKEN}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def described(relay: Relay, uuid: str) -> dict[str, Any] | None:
    body = item(relay, uuid)
    return body if not any("not been read yet" in m for m in body["properties"]["odx:missing"]) else None


def found_by_bbox(relay: Relay, bbox: list[float]) -> set[str]:
    response = requests.get(relay.url + "/stac/search", params={"token": TOKEN, "bbox": ",".join(map(str, bbox))},
                            timeout=30)
    return {feature["id"] for feature in response.json()["features"]}


OLD_THUMBNAIL = os.urandom(100_000)  # what a relay kept per task in its state store before thumbnails moved


def thumbnails_in_state_store(kind: str, relay: Relay, redis_url: str, uuid: str) -> None:
    """What a relay from when thumbnails were kept beside the facts left: SQLite, a `thumbnail` column in `facts`;
    Redis, schema 5 and a thumb:<uuid> key (base64); and no thumbnail in the results store."""
    (relay.data_dir / "results" / uuid / "thumbnail.png").unlink()
    if kind == "sqlite":
        with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
            db.execute("ALTER TABLE facts ADD COLUMN thumbnail BLOB")
            db.execute("UPDATE facts SET thumbnail = ? WHERE uuid = ?", (OLD_THUMBNAIL, uuid))
        return
    client = redis.Redis.from_url(redis_url)
    client.set(f"odx:thumb:{uuid}", base64.b64encode(OLD_THUMBNAIL))
    client.set("odx:schema", "5")
    client.close()


def forget_facts(kind: str, relay: Relay, redis_url: str, how: str) -> None:
    """What a relay from before the facts left (`upgrade`), or one killed between completion and facts (`cut`)."""
    if kind == "sqlite":
        with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
            if how == "upgrade":
                for table in ("facts", "facts_due", "facts_rtree", "facts_extent"):
                    db.execute(f"DROP TABLE {table}")
            else:
                db.execute("INSERT OR REPLACE INTO facts_due (uuid, not_before) SELECT uuid, 0 FROM facts")
                db.execute("DELETE FROM facts_rtree")
                db.execute("DELETE FROM facts")
        return
    client = redis.Redis.from_url(redis_url)
    for pattern in ("odx:facts:*", "odx:stac:*", "odx:stacbox:*", "odx:stacgeo:*", "odx:stacext:*",
                    "odx:factsdue"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    if how == "upgrade":
        client.set("odx:schema", "4")
    client.close()


def described_then_stopped(servers, node, redis_url: str, kind: str, images: list[Path], waited: str):
    """(relay flags, the relay, the task's uuid, its item) for a task completed, described and archived with its
    file `waited` (all.zip, thumbnail.png) in the results folder, then the relay killed and the node stopped."""
    flags = dict(token=TOKEN, check_interval=0.3, **({"redis": redis_url} if kind == "redis" else {}))
    relay = servers.add(start_relay(servers.tmp_path, [node.url], **flags))
    uuid = submit(relay, images, token=TOKEN)
    assert wait_status(relay, uuid, token=TOKEN)["status"]["code"] == COMPLETED
    before = wait_for(lambda: described(relay, uuid), timeout=30, what="the facts")
    wait_for((relay.data_dir / "results" / uuid / waited).is_file, timeout=30, what=f"{waited} in the results store")
    relay.process.kill()
    relay.process.wait(10)
    node.stop()
    return flags, relay, uuid, before


@pytest.mark.parametrize("kind, how", [("sqlite", "upgrade"), ("sqlite", "cut"), ("redis", "upgrade")])
def test_backfill_describes_completed_tasks_without_facts(servers, fast_node, redis_url: str,
                                                          sample_images: list[Path], kind: str, how: str) -> None:
    node = fast_node()
    flags, relay, uuid, before = described_then_stopped(servers, node, redis_url, kind, sample_images[:3], "all.zip")
    forget_facts(kind, relay, redis_url, how)  # the facts must come from the relay's own copy now

    again = servers.add(start_relay(servers.tmp_path, [node.url], port=relay.port, data_dir=relay.data_dir, **flags))
    after = wait_for(lambda: described(again, uuid), timeout=30, what="the backfill")
    assert after["bbox"] == before["bbox"] and after["properties"] == before["properties"]
    assert requests.get(after["assets"]["thumbnail"]["href"], timeout=30).content.startswith(b"\x89PNG")
    lons, lats = zip(*photo_positions(sample_images[:3]))
    assert uuid in found_by_bbox(again, [min(lons), min(lats), max(lons), max(lats)])
    assert "facts recorded uuid=" + uuid in again.log()


def test_backfill_keeps_trying_a_task_whose_zip_is_nowhere(servers, fast_node, sample_images: list[Path]) -> None:
    """Neither the node nor the results store has the zip: the item says its results are not read yet (no crash,
    no search hit), and the backfill tries again later instead of each round."""
    node = fast_node()
    relay = servers.add(start_relay(servers.tmp_path, [node.url], token=TOKEN, check_interval=0.3))
    uuid = submit(relay, sample_images[:2], token=TOKEN)
    assert wait_status(relay, uuid, token=TOKEN)["status"]["code"] == COMPLETED
    wait_for(lambda: described(relay, uuid), timeout=30, what="the facts")
    relay.process.kill()
    relay.process.wait(10)
    node.stop()
    (relay.data_dir / "results" / uuid / "all.zip").unlink()
    forget_facts("sqlite", relay, "", "cut")
    again = servers.add(start_relay(servers.tmp_path, [node.url], port=relay.port, data_dir=relay.data_dir,
                                    token=TOKEN, check_interval=0.3))
    wait_for(lambda: "facts not read yet uuid=" + uuid in again.log(), timeout=30, what="a failed try")
    body = item(again, uuid)
    assert body["geometry"] is None and "not been read yet" in body["properties"]["odx:missing"][0]
    validate_item(body)
    with sqlite3.connect(again.data_dir / "relay.sqlite3") as db:
        (not_before, tries), = db.execute("SELECT not_before, tries FROM facts_due WHERE uuid = ?", (uuid,))
    assert tries == 1 and not_before > 0


@pytest.mark.skipif(not nodeodx.available(), reason="NodeODX is not built (make setup builds it)")
def test_a_real_nodeodx_task_is_an_item_that_says_what_it_lacks(servers, nodeodx_factory,
                                                                sample_images: list[Path]) -> None:
    node = nodeodx_factory()
    relay = servers.add(start_relay(servers.tmp_path, [node.url], token=TOKEN, check_interval=0.3))
    uuid = submit(relay, sample_images[:2], token=TOKEN)
    assert wait_status(relay, uuid, timeout=60, token=TOKEN)["status"]["code"] == COMPLETED
    body = wait_for(lambda: described(relay, uuid), timeout=60, what="the facts")
    validate_item(body)
    missing = " | ".join(body["properties"]["odx:missing"])
    # test mode's all.zip (tests/fixtures/nodeodx-test-all.zip): an empty report and LAS, a plain GeoTIFF
    assert "report.pdf is an empty file" in missing and "not a Cloud-Optimized GeoTIFF" in missing
    assert "report" not in body["assets"] and "pointcloud_las" not in body["assets"]
    assert body["assets"]["orthophoto"]["type"] == "image/tiff; application=geotiff"
    assert body["properties"]["proj:code"] == "EPSG:32615"  # the fixture's Brighton dataset, UTM 15N
    west, south, east, north = body["bbox"]
    assert -92.0 < west < east < -91.99 and 46.84 < south < north < 46.85
    # its capture times come from the photos the relay staged (the fixture's carry none)
    assert body["properties"]["odx:datetime_from"] == "photos' EXIF"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_store_with_thumbnails_from_before_drops_them_and_serves_them_from_the_results(
        servers, fast_node, redis_url: str, sample_images: list[Path], kind: str) -> None:
    """Restarted on a state store that kept each thumbnail beside the facts (~140 KB a task in Redis), with the node
    gone: the bytes are dropped at start, the facts stay (not read again), and the thumbnail is made again from the
    archived zip when first asked for, then kept in the results store."""
    node = fast_node()
    flags, relay, uuid, before = described_then_stopped(servers, node, redis_url, kind, sample_images[:3],
                                                        "thumbnail.png")
    thumbnail = relay.data_dir / "results" / uuid / "thumbnail.png"
    first = thumbnail.read_bytes()
    thumbnails_in_state_store(kind, relay, redis_url, uuid)

    again = servers.add(start_relay(servers.tmp_path, [node.url], port=relay.port, data_dir=relay.data_dir, **flags))
    redis_at = redis_url if kind == "redis" else None
    assert_state_store_holds_no_thumbnail(again.data_dir, uuid, redis_at)
    assert item(again, uuid) == before  # the facts as they were
    served = requests.get(before["assets"]["thumbnail"]["href"], timeout=30)
    assert served.status_code == 200 and served.content == first
    assert thumbnail.read_bytes() == first
    assert f"thumbnail made again uuid={uuid}" in again.log() and f"facts recorded uuid={uuid}" not in again.log()
