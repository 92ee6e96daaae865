"""The relay's STAC API: a completed development-node task is a valid STAC Item whose footprint holds the photos,
found by pystac-client by bbox and datetime (and not with disjoint ones), seen by its owner only, behind a token
given as `?token=` or `Authorization: Bearer`, with STAC API errors for bad input."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests
from pystac_client import Client

from testkit.devnode import start_devnode
from testkit.relay import Relay, start_relay
from testkit.servers import ServerGroup
from tests.relay.relay_helpers import CHECK_INTERVAL, COMPLETED, FAST, node_url, submit, wait_for, wait_status
from tests.relay.stac_helpers import (
    assert_state_store_holds_no_thumbnail,
    capture_times,
    photo_positions,
    stac_get,
    validate_item,
)

pytestmark = pytest.mark.slow

TOKEN = "stac-owner-token"
ITEMS = "/stac/collections/odx-tasks/items"


class Cluster:
    def __init__(self, relay: Relay, uuids: list[str], other_token: str, photos: list[list[Path]]):
        self.relay, self.uuids, self.other_token, self.photos = relay, uuids, other_token, photos

    def url(self, path: str) -> str:
        return self.relay.url + path


def described(relay: Relay, uuid: str) -> dict[str, Any] | None:
    """The item once its facts are read (its `odx:missing` no longer says the results are not read yet)."""
    response = stac_get(relay.url + f"{ITEMS}/{uuid}", TOKEN)
    body = response.json() if response.status_code == 200 else {}
    missing = body.get("properties", {}).get("odx:missing", [])
    return body if body and not any("not been read yet" in m for m in missing) else None


@pytest.fixture(scope="module")
def cluster(module_servers: ServerGroup, sample_images: list[Path]) -> Iterator[Cluster]:
    """A relay (token TOKEN, accounts on) in front of a development node, with two completed tasks of TOKEN's
    owner from different photos, and an account of another owner."""
    node = module_servers.start(start_devnode, **FAST)
    relay = module_servers.add(start_relay(module_servers.tmp_path, [node_url(node)], token=TOKEN,
                                           allow_registration=True, check_interval=CHECK_INTERVAL))
    photos = [sample_images[:3], sample_images[3:]]
    uuids = [submit(relay, group, {"name": f"flight {i}"}, token=TOKEN) for i, group in enumerate(photos)]
    for uuid in uuids:
        assert wait_status(relay, uuid, token=TOKEN)["status"]["code"] == COMPLETED
        wait_for(lambda uuid=uuid: described(relay, uuid), timeout=30, what="the task's facts to be read")
    other = requests.post(relay.url + "/auth/register", data={"username": "other", "password": "another-pass"},
                          timeout=30).json()["token"]
    yield Cluster(relay, uuids, other, photos)


def test_item_validates_and_holds_the_photos(cluster: Cluster) -> None:
    uuid, photos = cluster.uuids[0], cluster.photos[0]
    body = described(cluster.relay, uuid)
    item = validate_item(body)
    assert item.id == uuid
    west, south, east, north = item.bbox
    for lon, lat in photo_positions(photos):
        assert west <= lon <= east and south <= lat <= north, (lon, lat, item.bbox)
    times = capture_times(photos)
    props = body["properties"]
    assert props["start_datetime"] == min(times).isoformat().replace("+00:00", "Z")
    assert props["end_datetime"] == max(times).isoformat().replace("+00:00", "Z")
    assert props["odx:datetime_from"] == "photos' EXIF"
    assert props["proj:code"].startswith("EPSG:326")  # the devnode writes in the photos' UTM zone
    assert len(props["proj:shape"]) == 2 and len(props["proj:transform"]) == 6
    assets = body["assets"]
    assert assets["orthophoto"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert assets["orthophoto"]["roles"] == ["visual"]
    assert assets["dsm"]["raster:bands"][0]["nodata"] == -9999 and assets["dtm"]["roles"] == ["data"]
    assert "pointcloud" in assets["pointcloud_ept"]["roles"] and "pointcloud_laz" in assets
    assert assets["report"]["type"] == "application/pdf"
    assert assets["camera_positions"]["type"] == "application/geo+json"
    assert props["odx:missing"] == []
    for key, start in (("orthophoto", b"II*"), ("dsm", b"II*"), ("all.zip", b"PK"), ("report", b"%PDF"),
                       ("pointcloud_ept", b"{"), ("camera_positions", b"{")):
        response = requests.get(assets[key]["href"], timeout=30)  # the hrefs carry the ?token= they were asked with
        assert response.status_code == 200 and response.content.startswith(start), (key, response.text[:200])
        assert b'"error"' not in response.content[:200]
    thumbnail = requests.get(assets["thumbnail"]["href"], timeout=30)
    assert thumbnail.headers["Content-Type"] == "image/png" and thumbnail.content.startswith(b"\x89PNG")
    from PIL import Image
    assert max(Image.open(BytesIO(thumbnail.content)).size) <= 256


def test_the_thumbnail_is_a_small_palette_png_kept_beside_the_results(cluster: Cluster) -> None:
    """A palette PNG of a few tens of KB (8-bit RGBA of the same orthophoto was ~100 KB), transparent where the
    orthophoto has no data, in the results store beside all.zip; the state store holds the facts only."""
    import numpy as np
    from PIL import Image
    uuid = cluster.uuids[1]
    png = stac_get(cluster.url(f"{ITEMS}/{uuid}/thumbnail.png"), TOKEN).content
    assert png == (cluster.relay.data_dir / "results" / uuid / "thumbnail.png").read_bytes()
    assert len(png) < 40_000, len(png)
    image = Image.open(BytesIO(png))
    assert image.mode == "P" and max(image.size) == 256
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    assert (alpha == 0).any() and (alpha == 255).mean() > 0.9  # transparent where no photo reached, else opaque
    assert_state_store_holds_no_thumbnail(cluster.relay.data_dir, uuid)


def test_pystac_client_finds_it_by_bbox_and_datetime(cluster: Cluster) -> None:
    uuid, photos = cluster.uuids[0], cluster.photos[0]
    catalog = Client.open(cluster.url(f"/stac?token={TOKEN}"))
    lons, lats = zip(*photo_positions(photos))
    around = [min(lons) - 1e-4, min(lats) - 1e-4, max(lons) + 1e-4, max(lats) + 1e-4]
    start, end = min(capture_times(photos)), max(capture_times(photos))

    def found(**search: Any) -> set[str]:
        return {item.id for item in catalog.search(**search).items()}

    assert uuid in found(bbox=around)
    assert uuid in found(bbox=[around[0] + 0.00005, around[1] + 0.00005, around[0] + 0.00006, around[1] + 0.00006])
    assert not found(bbox=[around[0] - 1, around[1] - 1, around[0] - 0.5, around[1] - 0.5])
    assert uuid in found(datetime=start + dt.timedelta(seconds=1))            # an instant within the flight
    assert uuid in found(datetime=[start - dt.timedelta(hours=1), None])      # open end
    assert uuid in found(datetime=[None, start])                              # open start, touching
    assert uuid not in found(datetime=[None, start - dt.timedelta(seconds=1)])
    assert uuid not in found(datetime=[end + dt.timedelta(seconds=1), end + dt.timedelta(days=1)])
    assert uuid in found(bbox=around, datetime=[start, end], ids=[uuid])
    assert found(ids=[uuid]) == {uuid}
    assert found(collections=["odx-tasks"]) == set(cluster.uuids)
    assert not found(collections=["another"])
    # over GET too, and with the token as a Bearer header instead
    bearer = Client.open(cluster.url("/stac"), headers={"Authorization": f"Bearer {TOKEN}"})
    assert uuid in {item.id for item in bearer.search(bbox=around, method="GET").items()}
    assert bearer.get_collection("odx-tasks").get_item(uuid).id == uuid


def test_search_pages_with_next_links(cluster: Cluster) -> None:
    catalog = Client.open(cluster.url(f"/stac?token={TOKEN}"))
    for method in ("GET", "POST"):
        pages = list(catalog.search(limit=1, method=method).pages())
        assert [len(page.items) for page in pages] == [1, 1]
        assert {page.items[0].id for page in pages} == set(cluster.uuids)
    first = stac_get(cluster.url("/stac/search"), TOKEN, limit=1).json()
    (next_link,) = [link for link in first["links"] if link["rel"] == "next"]
    assert f"token={TOKEN}" in next_link["href"]
    last = requests.get(next_link["href"], timeout=30).json()
    assert not [link for link in last["links"] if link["rel"] == "next"]
    # the collection's items and its extent
    assert {f["id"] for f in stac_get(cluster.url(ITEMS), TOKEN).json()["features"]} == set(cluster.uuids)
    collection = catalog.get_collection("odx-tasks")
    west, south, east, north = collection.extent.spatial.bboxes[0]
    for lon, lat in photo_positions(cluster.photos[0] + cluster.photos[1]):
        assert west <= lon <= east and south <= lat <= north


def test_another_owner_sees_nothing(cluster: Cluster) -> None:
    uuid = cluster.uuids[0]
    catalog = Client.open(cluster.url(f"/stac?token={cluster.other_token}"))
    assert not list(catalog.search().items())
    assert not list(catalog.search(ids=[uuid]).items())
    for path in (f"{ITEMS}/{uuid}", f"{ITEMS}/{uuid}/thumbnail.png"):
        response = stac_get(cluster.url(path), cluster.other_token)
        assert response.status_code == 404
        assert response.json()["code"] == "NotFound" and uuid in response.json()["description"]
    assert catalog.get_collection("odx-tasks").extent.temporal.intervals == [[None, None]]


@pytest.mark.parametrize("how", ["query", "bearer", "none"])
def test_a_wrong_or_missing_token_is_refused_clearly(cluster: Cluster, how: str) -> None:
    for path in ("/stac", "/stac/conformance", "/stac/collections", "/stac/search", f"{ITEMS}/{cluster.uuids[0]}"):
        if how == "query":
            response = stac_get(cluster.url(path), "not-the-token")
        elif how == "bearer":
            response = stac_get(cluster.url(path), headers={"Authorization": "Bearer not-the-token"})
        else:
            response = stac_get(cluster.url(path))
        assert response.status_code == (401 if how == "none" else 403), path
        body = response.json()
        assert body["code"] == ("Unauthorized" if how == "none" else "Forbidden")
        assert "token" in body["description"].lower() and "not-the-token" not in body["description"]
    refused = requests.post(cluster.url("/stac/search"), json={}, headers={"Authorization": "Bearer x"}, timeout=30)
    assert refused.status_code == 403 and refused.json()["code"] == "Forbidden"


@pytest.mark.parametrize("params, word", [
    ({"bbox": "1,2,3"}, "bbox"), ({"bbox": "a,b,c,d"}, "bbox"), ({"bbox": "10,50,11,95"}, "bbox"),
    ({"datetime": "yesterday"}, "datetime"), ({"datetime": "2024-01-02T00:00:00Z/2024-01-01T00:00:00Z"}, "ends"),
    ({"datetime": "../.."}, "open"), ({"limit": "0"}, "limit"), ({"limit": "many"}, "limit"),
    ({"cursor": "%%%"}, "cursor"), ({"intersects": '{"type": "Point", "coordinates": [0, 0]}'}, "intersects")])
def test_bad_search_input_is_a_stac_error(cluster: Cluster, params: dict[str, str], word: str) -> None:
    response = stac_get(cluster.url("/stac/search"), TOKEN, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidParameterValue" and word in body["description"]
    posted = requests.post(cluster.url(f"/stac/search?token={TOKEN}"), json=params, timeout=30)
    assert posted.status_code == 400 and word in posted.json()["description"]


def test_bad_post_bodies_and_unknown_things(cluster: Cluster) -> None:
    for body in ("[1, 2]", "not json", '{"bbox": [1, 2, 3, 4, 5]}', '{"ids": [1]}', '{"limit": true}'):
        response = requests.post(cluster.url(f"/stac/search?token={TOKEN}"), data=body,
                                 headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 400 and set(response.json()) == {"code", "description", "error"}, body
    for path in ("/stac/collections/nope", "/stac/collections/nope/items", f"{ITEMS}/not-a-uuid",
                 f"{ITEMS}/00000000-0000-0000-0000-000000000000"):
        response = stac_get(cluster.url(path), TOKEN)
        assert response.status_code == 404 and response.json()["code"] == "NotFound", path
