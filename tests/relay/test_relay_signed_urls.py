"""Signed download URLs for streaming: a task's owner gets, with its token, URLs that carry an expiry and a
signature instead (in the path, so that QGIS's EPT reader keeps it for the tiles); they serve the rasters with
Range (GDAL /vsicurl/ reads them as COGs) and the EPT files one by one, refuse anything altered or expired with
a 403 that names no secret, and the relay says when a raster is not a COG."""
from __future__ import annotations

import json
import time
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
import requests
from osgeo import gdal

from tests.relay.relay_helpers import COMPLETED, submit, wait_status

pytestmark = pytest.mark.slow
TOKEN = "owner-token-1234"


@pytest.fixture
def completed(relay_factory, fast_node, sample_images: list[Path]):
    """A relay with a token in front of a development node, and one completed task through it."""
    relay = relay_factory([fast_node()], token=TOKEN)
    uuid = submit(relay, sample_images[:4])
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    return relay, uuid


def links(relay, uuid: str, token: str = TOKEN, **query) -> requests.Response:
    return requests.get(f"{relay.url}/task/{uuid}/signed-urls", params={"token": token, **query}, timeout=60)


def members(relay, uuid: str) -> zipfile.ZipFile:
    whole = requests.get(f"{relay.url}/task/{uuid}/download/all.zip", params={"token": TOKEN}, timeout=60).content
    return zipfile.ZipFile(BytesIO(whole))


def test_signed_urls_stream_rasters_and_ept_without_the_token(completed) -> None:
    relay, uuid = completed
    assert links(relay, uuid, token="").status_code == 401
    assert links(relay, uuid, token="wrong").status_code == 403
    answer = links(relay, uuid)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["assets"]) == {"orthophoto.tif", "dsm.tif", "dtm.tif", "ept.json", "shots.geojson"}
    assert body["expires"] > time.time() + 3600
    assert TOKEN not in answer.text
    archive = members(relay, uuid)
    ortho = body["assets"]["orthophoto.tif"]
    assert ortho["href"] == relay.url + ortho["path"] and "/signed/" in ortho["path"]

    whole = requests.get(ortho["href"], timeout=30)
    assert whole.status_code == 200 and whole.content == archive.read("odm_orthophoto/odm_orthophoto.tif")
    part = requests.get(ortho["href"], headers={"Range": "bytes=100-1099"}, timeout=30)
    assert part.status_code == 206 and part.content == whole.content[100:1100]
    assert requests.head(ortho["href"], timeout=30).headers["Content-Length"] == str(len(whole.content))

    # GDAL reads it over HTTP as QGIS will: tiled, with overviews, and the relay says it is a COG
    for name in ("orthophoto.tif", "dsm.tif", "dtm.tif"):
        entry = body["assets"][name]
        assert entry["cog"]["cog"] is True and entry["cog"]["layout"] is True, entry["cog"]
        dataset = gdal.OpenEx("/vsicurl/" + entry["href"], open_options=[])
        assert dataset is not None, name
        band = dataset.GetRasterBand(1)
        assert band.GetBlockSize() == [256, 256]
        assert band.GetOverviewCount() >= 1 and band.GetOverviewCount() == entry["cog"]["overviews"]
        assert dataset.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        dataset = None

    # the EPT index and its tiles, each by the path QGIS makes from the index's URL
    ept = body["assets"]["ept.json"]
    index = requests.get(ept["href"], timeout=30)
    assert index.status_code == 200 and json.loads(index.content) == json.loads(
        archive.read("entwine_pointcloud/ept.json"))
    folder = ept["href"].rsplit("/", 1)[0]
    for tile in ("ept-data/0-0-0-0.laz", "ept-hierarchy/0-0-0-0.json"):
        got = requests.get(f"{folder}/{tile}", timeout=30)
        assert got.status_code == 200 and got.content == archive.read("entwine_pointcloud/" + tile), tile
    # GDAL's probes for side files are told plainly that they are not there
    assert requests.get(ortho["href"] + ".aux.xml", timeout=30).status_code == 404
    assert requests.get(f"{folder}/orthophoto.tif.ovr", timeout=30).status_code == 404


def test_altered_other_or_expired_signatures_are_refused(completed, relay_factory, fast_node,
                                                          sample_images: list[Path]) -> None:
    relay, uuid = completed
    secret = (relay.data_dir / "relay.secret").read_text().strip()
    body = links(relay, uuid).json()
    ortho_path = body["assets"]["orthophoto.tif"]["path"]
    _, _, _, expires, sig, _ = ortho_path.strip("/").split("/")
    ept_folder = body["assets"]["ept.json"]["path"].rsplit("/", 1)[0]

    def refused(path: str, words: str) -> None:
        answer = requests.get(relay.url + path, timeout=30)
        assert answer.status_code == 403, (path, answer.status_code, answer.text)
        assert words in answer.json()["error"]
        assert secret not in answer.text and sig not in answer.text and TOKEN not in answer.text

    forged = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    refused(ortho_path.replace(sig, forged), "Invalid signature")
    refused(ortho_path.replace("/orthophoto.tif", "/dsm.tif"), "Invalid signature")  # another file
    refused(ortho_path.replace(f"/{expires}/", f"/{int(expires) + 3600}/"), "Invalid signature")  # longer life
    refused(f"{ept_folder}/orthophoto.tif", "Invalid signature")  # the EPT scope opens the EPT files only
    other = submit(relay, sample_images[:3])
    assert wait_status(relay, other)["status"]["code"] == COMPLETED
    refused(ortho_path.replace(uuid, other), "Invalid signature")  # another task
    assert requests.get(relay.url + ortho_path.replace(uuid, "0" * 8 + uuid[8:]), timeout=30).status_code == 404
    assert requests.post(relay.url + ortho_path, timeout=30).status_code == 405  # reads only

    short = links(relay, uuid, expires_in="1", assets="orthophoto.tif").json()
    assert list(short["assets"]) == ["orthophoto.tif"]
    assert requests.get(relay.url + short["assets"]["orthophoto.tif"]["path"], timeout=30).status_code == 200
    time.sleep(short["expires"] + 1.2 - time.time())
    refused(short["assets"]["orthophoto.tif"]["path"], "expired")
    assert links(relay, uuid, expires_in="soon").status_code == 400
    assert links(relay, uuid, assets="../relay.secret").status_code == 400
    assert links(relay, uuid, assets="entwine_pointcloud.zip").status_code == 400


def test_the_relay_says_when_an_orthophoto_is_not_a_cog(relay_factory, fast_node, sample_images: list[Path]) -> None:
    relay = relay_factory([fast_node()], token=TOKEN)
    uuid = submit(relay, sample_images[:4], {"options": json.dumps([{"name": "cog", "value": False}])})
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    report = links(relay, uuid).json()["assets"]["orthophoto.tif"]["cog"]
    assert report["cog"] is False and report["tiled"] is True and report["overviews"] == 0
    assert "no overviews" in report["problem"] and "cog=true" in report["problem"]
    assert f"not a COG uuid={uuid} asset=orthophoto.tif" in relay.log()


def test_a_url_signed_by_one_replica_opens_on_another(relay_factory, fast_node, sample_images: list[Path],
                                                      redis_url: str, tmp_path: Path) -> None:
    """Replicas behind one balancer share the signing key (in Redis), so a viewer's requests may reach any."""
    node = fast_node()
    shared = {"token": TOKEN, "redis": redis_url, "staging_dir": tmp_path / "staging",
              "results_dir": tmp_path / "results"}
    first, second = relay_factory([node], **shared), relay_factory([node], **shared)
    uuid = submit(first, sample_images[:3])
    assert wait_status(first, uuid)["status"]["code"] == COMPLETED
    body = links(first, uuid).json()
    for name in ("orthophoto.tif", "ept.json"):
        mine = requests.get(first.url + body["assets"][name]["path"], timeout=30)
        theirs = requests.get(second.url + body["assets"][name]["path"], timeout=30)
        assert mine.status_code == theirs.status_code == 200 and mine.content == theirs.content, name
    forged = body["assets"]["orthophoto.tif"]["path"].replace("/orthophoto.tif", "/dtm.tif")
    assert requests.get(second.url + forged, timeout=30).status_code == 403
