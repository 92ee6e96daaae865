"""The results store: a completed task's all.zip is copied from its node once, so that its outputs download
from the relay after the node is gone (killed, recycled), Range requests and single products included, and its
STAC thumbnail is kept beside it; a removed task's copy goes with it. Each test runs against both backends: a
folder on disk, and S3-compatible object storage (moto's server, a real HTTP endpoint started by the test, talked
to by the relay with boto3)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.relay import Relay
from testkit.s3 import SECRET_KEY, start_s3
from testkit.servers import REPO, ServerGroup, free_port
from tests.relay.relay_helpers import COMPLETED, get_json, post_json, submit, wait_for, wait_status
from tests.relay.results_helpers import BACKENDS, BUCKET, PREFIX, Backend, archived, assert_served_from_relay
from tests.relay.stac_helpers import assert_state_store_holds_no_thumbnail

pytestmark = pytest.mark.slow
THUMBNAIL = "/stac/collections/odx-tasks/items/{uuid}/thumbnail.png"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, servers: ServerGroup) -> Backend:
    return Backend(request.param, servers)


def test_outputs_outlive_their_node(relay_factory, fast_node, sample_images: list[Path], backend: Backend) -> None:
    node = fast_node()
    relay = relay_factory([node], **backend.flags())
    uuid = submit(relay, sample_images[:3])
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    archived(relay, uuid)
    whole = requests.get(node.api(f"/task/{uuid}/download/all.zip"), timeout=30).content
    assert backend.zip_bytes(relay, uuid) == whole
    wait_for(lambda: backend.held(relay, uuid) == [f"{uuid}/all.zip", f"{uuid}/output.json",
                                                   f"{uuid}/thumbnail.png"], timeout=20,
             what="the thumbnail beside the zip, no pending marker left")
    assert not list((relay.data_dir / "archiving").glob("*")) if backend.s3 else True  # the upload's spool file
    node.stop()  # gone, with its copy

    assert_served_from_relay(relay, uuid, whole)
    assert get_json(relay, f"/task/{uuid}/info")["status"]["code"] == COMPLETED  # the node's last word
    thumbnail = requests.get(relay.api(THUMBNAIL.format(uuid=uuid)), timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/png"
    assert thumbnail.content == backend.file_bytes(relay, uuid, "thumbnail.png")
    assert_state_store_holds_no_thumbnail(relay.data_dir, uuid)

    assert post_json(relay, "/task/remove", {"uuid": uuid}) == {"success": True}
    assert backend.held(relay, uuid) == []


def test_a_thumbnail_the_store_lacks_is_made_again_from_the_zip(
        relay_factory, fast_node, sample_images: list[Path], backend: Backend) -> None:
    """A thumbnail missing from the results store (a store upgraded from when the state store kept them, a write that
    failed) is made again from the archived all.zip when it is asked for, with the node gone, and kept; while the
    zip cannot be had either, the answer says so (503, try again later), not that there is no thumbnail."""
    node = fast_node()
    relay = relay_factory([node], **backend.flags())
    uuid = submit(relay, sample_images[:3])
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    archived(relay, uuid)
    wait_for(lambda: backend.file_bytes(relay, uuid, "thumbnail.png"), timeout=20, what="the thumbnail")
    first = backend.file_bytes(relay, uuid, "thumbnail.png")
    whole = backend.file_bytes(relay, uuid, "all.zip")
    node.stop()
    backend.delete(relay, uuid, "thumbnail.png")
    backend.delete(relay, uuid, "all.zip")
    shutil.rmtree(relay.data_dir / "cache" / uuid, ignore_errors=True)  # (S3: the facts were read from a copy there)

    away = requests.get(relay.api(THUMBNAIL.format(uuid=uuid)), timeout=30)
    assert away.status_code == 503 and away.json()["code"] == "ServiceUnavailable", away.text
    assert "try again later" in away.json()["description"] and SECRET_KEY not in away.text
    assert backend.file_bytes(relay, uuid, "thumbnail.png") is None

    backend.put(relay, uuid, "all.zip", whole)
    again = requests.get(relay.api(THUMBNAIL.format(uuid=uuid)), timeout=30)
    assert again.status_code == 200 and again.content == first
    assert backend.file_bytes(relay, uuid, "thumbnail.png") == first  # kept: made once
    assert relay.log().count(f"thumbnail made again uuid={uuid}") == 1
    assert requests.get(relay.api(THUMBNAIL.format(uuid=uuid)), timeout=30).content == first
    assert relay.log().count(f"thumbnail made again uuid={uuid}") == 1


def node_tasks(node: Any) -> list[str]:
    return [t["uuid"] for t in get_json(node, "/task/list")]


def check_removed_from_node(relay_factory: Callable[..., Relay], servers: ServerGroup, node: Any,
                            images: list[Path], backend: Backend, timeout: float = 60) -> None:
    relay = relay_factory([node], remove_from_node=True, **backend.flags())
    uuid = submit(relay, images)
    info = wait_status(relay, uuid, timeout=timeout)
    assert info["status"]["code"] == COMPLETED
    wait_for(lambda: f"node copy removed uuid={uuid}" in relay.log(), timeout=30, what="the node's copy removed")
    assert uuid not in node_tasks(node)
    # (asked before, it could fall between the node's removal and the record saying so: "not found" from the node)
    output = get_json(relay, f"/task/{uuid}/output")
    assert output, "the node says something while it processes"
    assert output == json.loads(backend.file_bytes(relay, uuid, "output.json") or b"null")  # kept with the archive
    whole = backend.zip_bytes(relay, uuid)
    assert whole is not None and "odm_orthophoto/odm_orthophoto.tif" in zipfile.ZipFile(BytesIO(whole)).namelist()

    def fully_usable(relay: Relay) -> None:
        answered = get_json(relay, f"/task/{uuid}/info")
        assert answered["status"]["code"] == COMPLETED and answered["uuid"] == uuid
        assert answered["processingTime"] == info["processingTime"]
        assert get_json(relay, f"/task/{uuid}/output") == output
        assert get_json(relay, f"/task/{uuid}/output", line=2) == output[2:]
        assert get_json(relay, f"/task/{uuid}/info", with_output=0)["output"] == output
        assert uuid in [t["uuid"] for t in get_json(relay, "/task/list")]
        assert_served_from_relay(relay, uuid, whole)
        assert "error" in post_json(relay, "/task/restart", {"uuid": uuid})  # its inputs left with the node's copy

    fully_usable(relay)
    relay.stop()  # a replica restart loses nothing of it
    again = relay_factory([node], remove_from_node=True, port=relay.port, data_dir=relay.data_dir,
                          **backend.flags())
    fully_usable(again)
    assert post_json(again, "/task/remove", {"uuid": uuid}) == {"success": True}
    assert backend.held(again, uuid) == []
    assert "not found" in get_json(again, f"/task/{uuid}/info")["error"]


def test_removed_from_the_node_the_task_stays_fully_usable(
        relay_factory, servers: ServerGroup, fast_node, sample_images: list[Path], backend: Backend) -> None:
    check_removed_from_node(relay_factory, servers, fast_node(), sample_images[:3], backend)


def test_removed_from_a_real_nodeodx_the_task_stays_fully_usable(
        relay_factory, servers: ServerGroup, nodeodx_factory, sample_images: list[Path]) -> None:
    """The removal the relay asks for is NodeODX's own /task/remove: proven on the real node (its test mode
    completes a task with real outputs)."""
    check_removed_from_node(relay_factory, servers, nodeodx_factory(), sample_images[:3], Backend("s3", servers),
                            timeout=120)


def test_results_past_their_retention_go_with_their_task(
        relay_factory, fast_node, sample_images: list[Path], backend: Backend) -> None:
    """`--keep-results`: a task ended longer ago is removed, with its results and its node's copy, as a NodeODX
    node removes old tasks (not before: its results are there once archived)."""
    node = fast_node()
    relay = relay_factory([node], keep_results=3, **backend.flags())
    foreign = relay.data_dir / "results" / "not-a-task" / "notes.txt"  # a results folder shared with other files
    foreign.parent.mkdir(parents=True)
    foreign.write_text("kept")
    if backend.s3:
        backend.s3.client().put_object(Bucket=BUCKET, Key=f"{PREFIX}/not-a-task/notes.txt", Body=b"kept")
    old = submit(relay, sample_images[:2])
    assert wait_status(relay, old)["status"]["code"] == COMPLETED
    archived(relay, old)
    assert backend.held(relay, old)
    wait_for(lambda: "error" in get_json(relay, f"/task/{old}/info"), timeout=20, what="the old task to expire")
    wait_for(lambda: backend.held(relay, old) == [], timeout=10, what="its results removed")
    assert old not in [t["uuid"] for t in get_json(relay, "/task/list")]
    assert old not in node_tasks(node)
    assert "error" in requests.get(relay.api(f"/task/{old}/download/all.zip"), timeout=30).json()
    assert foreign.read_text() == "kept"
    if backend.s3:
        assert backend.s3.keys(BUCKET, f"{PREFIX}/not-a-task/") == [f"{PREFIX}/not-a-task/notes.txt"]


def test_a_store_that_refuses_stops_the_relay_with_the_reason_and_no_secret(
        servers: ServerGroup, tmp_path: Path) -> None:
    s3 = servers.add(start_s3(servers.tmp_path))
    run = subprocess.run([sys.executable, "-m", "proxy", "--port", str(free_port()), "--data-dir", str(tmp_path / "r"),
                          "--results-s3", "s3://no-such-bucket/x"], cwd=REPO, capture_output=True, text=True,
                         timeout=60, env={**os.environ, **s3.env})
    assert run.returncode != 0
    assert "cannot reach the bucket s3://no-such-bucket/" in run.stderr and "404" in run.stderr
    assert SECRET_KEY not in run.stderr + run.stdout
    bad = subprocess.run([sys.executable, "-m", "proxy", "--results-s3", "http://bucket/x"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "s3://bucket/prefix" in bad.stderr


def test_a_store_that_went_away_is_named_in_the_error_without_a_secret(
        relay_factory, fast_node, sample_images: list[Path], servers: ServerGroup) -> None:
    backend = Backend("s3", servers)
    node = fast_node()
    relay = relay_factory([node], **backend.flags())
    uuid = submit(relay, sample_images[:2])
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    archived(relay, uuid)
    # the facts are read from a copy of the zip in the download cache, filled from the bucket: once they are, that
    # copy goes (a product is cut from it while it is there, whether the bucket answers or not)
    wait_for(lambda: f"facts recorded uuid={uuid}" in relay.log(), timeout=30, what="the facts read")
    shutil.rmtree(relay.data_dir / "cache" / uuid)
    assert backend.s3 is not None
    backend.s3.stop()
    node.stop()
    for name in ("all.zip", "orthophoto.tif"):
        answer = requests.get(relay.api(f"/task/{uuid}/download/{name}"), timeout=60).json()
        assert f"s3://{BUCKET}/{PREFIX}/{uuid}/all.zip" in answer["error"], answer
        assert SECRET_KEY not in answer["error"]
    assert SECRET_KEY not in relay.log()


def test_a_store_out_of_reach_at_start_is_said_without_the_endpoints_password(
        relay_factory, servers: ServerGroup) -> None:
    """An endpoint that does not answer yet does not stop the relay (archives are tried again); the warning names
    the bucket, not the password of an endpoint URL that carries one."""
    password = "endpoint-hush-4711"
    endpoint = f"http://archiver:{password}@127.0.0.1:{free_port()}"
    relay = relay_factory([], results_s3="s3://later/x", env={"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k",
                                                              "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    assert get_json(relay, "/info")["relay"]["nodes"] == 0
    assert "cannot reach the bucket s3://later/" in relay.log()
    assert SECRET_KEY not in relay.log() and password not in relay.log()
