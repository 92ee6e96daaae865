"""The results store: a completed task's all.zip is copied from its node once, so that its outputs download
from the relay after the node is gone (killed, recycled), Range requests and single products included; a
removed task's copy goes with it."""
from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

import pytest
import requests

from tests.relay.relay_helpers import COMPLETED, get_json, post_json, submit, wait_for, wait_status

pytestmark = pytest.mark.slow


def test_outputs_outlive_their_node(relay_factory, fast_node, sample_images: list[Path]) -> None:
    node = fast_node()
    relay = relay_factory([node])
    uuid = submit(relay, sample_images[:3])
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    archived = relay.data_dir / "results" / uuid / "all.zip"
    wait_for(archived.is_file, timeout=20, what="the results to be archived")
    whole = requests.get(node.api(f"/task/{uuid}/download/all.zip"), timeout=30).content
    assert archived.read_bytes() == whole
    node.stop()  # gone, with its copy

    assert requests.get(relay.api(f"/task/{uuid}/download/all.zip"), timeout=30).content == whole
    ranged = requests.get(relay.api(f"/task/{uuid}/download/all.zip"), headers={"Range": "bytes=10-19"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == whole[10:20]
    with zipfile.ZipFile(BytesIO(whole)) as archive:
        orthophoto = archive.read("odm_orthophoto/odm_orthophoto.tif")
        dsm = archive.read("odm_dem/dsm.tif")
    assert requests.get(relay.api(f"/task/{uuid}/download/orthophoto.tif"), timeout=30).content == orthophoto
    assert requests.get(relay.api(f"/task/{uuid}/download/dsm.tif"), timeout=30).content == dsm
    assert get_json(relay, f"/task/{uuid}/info")["status"]["code"] == COMPLETED  # the node's last word

    assert post_json(relay, "/task/remove", {"uuid": uuid}) == {"success": True}
    assert not archived.parent.exists()
