"""The development node, over HTTP with plain `requests`: every endpoint and flag, answered as NodeODX does."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid as uuidlib
import zipfile
from collections.abc import Iterator
from importlib import resources
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests

from devnode.__main__ import build_parser, env_name
from shared.types import TaskStatus
from testkit.devnode import DevNode, start_devnode
from testkit.servers import ServerGroup, WebhookReceiver

pytestmark = pytest.mark.slow

QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = (int(s) for s in TaskStatus)
ENDED = (FAILED, COMPLETED, CANCELED)


# ---- helpers -------------------------------------------------------------------------------------------

def get(node: DevNode, path: str, **query: Any) -> Any:
    response = requests.get(node.api(path, **query), timeout=10)
    assert response.status_code == 200
    return response.json()


def post(node: DevNode, path: str, data: Any = None, json_body: Any = None, **kwargs: Any) -> Any:
    response = requests.post(node.api(path), data=data, json=json_body, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def form_data(**fields: Any) -> dict[str, tuple[None, str]]:
    """Text fields sent as multipart/form-data, the only body NodeODX's `/task/new/init` reads."""
    return {k: (None, v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items()}


def image_files(images: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in images]


def create_task(node: DevNode, images: list[Path], set_uuid: str | None = None, **fields: Any) -> str:
    """init, one upload per image, commit: what pyodx does; returns the uuid."""
    headers = {"set-uuid": set_uuid} if set_uuid else {}
    reply = post(node, "/task/new/init", files=form_data(**fields), headers=headers)
    assert "uuid" in reply, reply
    for image in images:
        assert post(node, f"/task/new/upload/{reply['uuid']}", files=image_files([image])) == {"success": True}
    assert post(node, f"/task/new/commit/{reply['uuid']}") == {"uuid": reply["uuid"]}
    return reply["uuid"]


def task_info(node: DevNode, task_uuid: str, **query: Any) -> dict:
    return get(node, f"/task/{task_uuid}/info", **query)


def wait_for(node: DevNode, task_uuid: str, codes: tuple[int, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = task_info(node, task_uuid)
        if info["status"]["code"] in codes:
            return info
        assert time.monotonic() < deadline, f"task stuck at {info}"
        time.sleep(0.05)


def zip_names(content: bytes) -> set[str]:
    return set(zipfile.ZipFile(BytesIO(content)).namelist())


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    group = ServerGroup(tmp_path_factory.mktemp("nodes"))
    yield group
    group.stop_all()


@pytest.fixture(scope="module")
def node(module_servers: ServerGroup) -> DevNode:
    """A node whose tasks take a minute: for the API's shape, where no task should reach its outputs."""
    return module_servers.start(start_devnode, slots=3, seconds_per_image=10)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def fast_node(module_servers: ServerGroup) -> DevNode:
    """A node whose tasks go straight to building their outputs."""
    return module_servers.start(start_devnode, slots=3, seconds_per_image=0)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def finished(fast_node: DevNode, sample_images: list[Path]) -> dict[str, str]:
    """Tasks that ran to the end on `fast_node`, made at once so their outputs are built side by side."""
    node = fast_node
    uuids = {
        "default": create_task(node, sample_images, name="default", options=[{"name": "dsm", "value": True}]),
        "skip": create_task(node, sample_images, skipPostProcessing="true"),
        "outputs": create_task(node, sample_images[:3], outputs=["odm_orthophoto", "images.json"]),
    }
    for task_uuid in uuids.values():
        assert wait_for(node, task_uuid, ENDED, timeout=60)["status"]["code"] == COMPLETED
    return uuids


# ---- node information ----------------------------------------------------------------------------------

def test_info_has_nodeodx_fields_and_engine_odx(node: DevNode) -> None:
    response = requests.get(node.api("/info"), timeout=5)
    info = response.json()
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert list(info) == ["version", "taskQueueCount", "totalMemory", "availableMemory", "cpuCores",
                          "maxImages", "maxParallelTasks", "engineVersion", "engine"]
    assert info["engine"] == "odx" and info["version"] == "2.2.1"
    assert info["maxImages"] is None and info["maxParallelTasks"] == 3
    assert info["totalMemory"] == 16 * 1024 ** 3
    assert 0 < info["availableMemory"] < info["totalMemory"]


def test_options_are_the_real_nodeodx_list(node: DevNode) -> None:
    real = json.loads(resources.files("shared").joinpath("data", "nodeodx-options.json").read_text())
    assert get(node, "/options") == real


def test_auth_endpoints_say_not_available(node: DevNode) -> None:
    assert get(node, "/auth/info") == {"message": "Authentication not available on this node",
                                       "loginUrl": None, "registerUrl": None}
    assert post(node, "/auth/login", data={"username": "a", "password": "b"}) == {"error": "Not available"}
    assert post(node, "/auth/register", data={"username": "a", "password": "b"}) == {"error": "Not available"}


def test_cors_preflight_is_answered(node: DevNode) -> None:
    response = requests.options(node.api("/task/new/init"), timeout=5,
                                headers={"Origin": "http://x", "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "set-uuid"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "set-uuid" in response.headers["Access-Control-Allow-Headers"]


# ---- errors, as NodeODX sends them ---------------------------------------------------------------------

def test_unknown_task_answers_not_found_with_status_200(node: DevNode) -> None:
    missing = str(uuidlib.uuid4())
    for path in (f"/task/{missing}/info", f"/task/{missing}/output", f"/task/{missing}/download/all.zip"):
        assert get(node, path) == {"error": f"{missing} not found"}
    for command in ("cancel", "remove", "restart"):
        assert post(node, f"/task/{command}", data={"uuid": missing}) == \
            {"success": False, "error": f"{missing} not found"}
        assert post(node, f"/task/{command}", data={}) == {"error": "uuid param missing."}
    assert post(node, f"/task/new/upload/{missing}", files=image_files([])) == {"error": "Invalid uuid (not found)"}
    assert post(node, f"/task/new/commit/{missing}") == {"error": "Invalid uuid (not found)"}


def test_download_of_anything_but_all_zip_is_an_invalid_asset(fast_node: DevNode, finished: dict) -> None:
    for asset in ("orthophoto.tif", "ALL.ZIP", "all.tar"):
        assert get(fast_node, f"/task/{finished['default']}/download/{asset}") == {"error": "Invalid asset"}


def test_invalid_option_values_are_refused_unknown_ones_dropped(node: DevNode, sample_images: list[Path]) -> None:
    bad = json.dumps([{"name": "pc-quality", "value": "extreme"}, {"name": "no-such-option", "value": 1}])
    reply = post(node, "/task/new/init", files=form_data(options=bad))
    problems = json.loads(reply["error"])
    assert [p["name"] for p in problems] == ["pc-quality"] and "extreme" in problems[0]["error"]
    reply = post(node, "/task/new", data={"options": bad}, files=image_files(sample_images[:2]))
    assert json.loads(reply["error"])[0]["name"] == "pc-quality"

    task_uuid = create_task(node, sample_images[:2], options=[{"name": "no-such-option", "value": 1},
                                                               {"name": "orthophoto-resolution", "value": "2.5"},
                                                               {"name": "dsm", "value": "true"}])
    options = task_info(node, task_uuid)["options"]
    assert options == [{"name": "dsm", "value": True}, {"name": "orthophoto-resolution", "value": 2.5},
                       {"name": "pc-ept", "value": True}, {"name": "cog", "value": True},
                       {"name": "gltf", "value": True}]
    post(node, "/task/remove", data={"uuid": task_uuid})


def test_upload_errors(node: DevNode, sample_images: list[Path]) -> None:
    task_uuid = post(node, "/task/new/init", data={})["uuid"]
    assert post(node, f"/task/new/upload/{task_uuid}", files={"other": ("a.txt", b"x")}) == \
        {"error": "Unexpected field"}
    assert post(node, f"/task/new/upload/{task_uuid}", data={"images": "not a file"}) == \
        {"error": "Need at least 1 file.", "noRetry": True}
    assert post(node, f"/task/new/commit/{task_uuid}") == {"error": "Need at least 1 file."}
    assert post(node, f"/task/new/commit/{task_uuid}") == {"error": "Invalid uuid (not found)"}
    assert post(node, "/task/new", data={"name": "nothing"}) == {"error": "Need at least 1 file or a zip file url."}


def test_one_shot_task_new_and_dates_and_names(node: DevNode, sample_images: list[Path]) -> None:
    reply = post(node, "/task/new", data={"name": "one shot", "dateCreated": "1700000000000"},
                 files=image_files(sample_images[:2]))
    info = task_info(node, reply["uuid"])
    assert info["name"] == "one shot" and info["dateCreated"] == 1700000000000 and info["imagesCount"] == 2
    unnamed = create_task(node, sample_images[:2], name="")
    assert task_info(node, unnamed)["name"].startswith("Task of 20")
    assert {"uuid": unnamed} in get(node, "/task/list")
    for task_uuid in (reply["uuid"], unnamed):
        assert post(node, "/task/remove", data={"uuid": task_uuid}) == {"success": True}


def test_filenames_are_sanitised_and_never_clash(node: DevNode, sample_images: list[Path]) -> None:
    task_uuid = post(node, "/task/new/init", data={})["uuid"]
    data = sample_images[0].read_bytes()
    files = [("images", ("../../escape.jpg", data, "image/jpeg")), ("images", ("C:\\dir\\win.jpg", data, "image/jpeg")),
             ("images", ("body.json", data, "application/json")), ("images", ("same.jpg", data, "image/jpeg")),
             ("images", ("same.jpg", data, "image/jpeg")), ("images", ("gcp_list.txt", b"EPSG:4326\n", "text/plain"))]
    assert post(node, f"/task/new/upload/{task_uuid}", files=files) == {"success": True}
    assert post(node, f"/task/new/commit/{task_uuid}") == {"uuid": task_uuid}
    info = task_info(node, task_uuid)
    assert info["imagesCount"] == 5  # the .txt is a GCP file, not an image
    folder = node.data_dir / task_uuid
    assert sorted(p.name for p in (folder / "images").iterdir()) == \
        ["_body.json", "escape.jpg", "same.jpg", "same_.jpg", "win.jpg"]
    assert [p.name for p in (folder / "gcp").iterdir()] == ["gcp_list.txt"]
    assert not (node.data_dir.parent / "escape.jpg").exists()
    post(node, "/task/remove", data={"uuid": task_uuid})


# ---- set-uuid ------------------------------------------------------------------------------------------

def test_set_uuid_is_used_once_and_must_be_a_uuid(node: DevNode, sample_images: list[Path]) -> None:
    chosen = str(uuidlib.uuid4())
    assert create_task(node, sample_images[:2], set_uuid=chosen) == chosen
    for wanted in (chosen, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert post(node, "/task/new/init", headers={"set-uuid": wanted}) == {"error": f"Invalid set-uuid: {wanted}"}
        assert post(node, "/task/new", headers={"set-uuid": wanted}, files=image_files(sample_images[:2])) == \
            {"error": f"Invalid set-uuid: {wanted}"}
    post(node, "/task/remove", data={"uuid": chosen})


# ---- a whole task --------------------------------------------------------------------------------------

def test_completed_task_downloads_all_zip_whole_ignoring_range(fast_node: DevNode, finished: dict) -> None:
    node = fast_node
    task_uuid = finished["default"]
    info = task_info(node, task_uuid)
    assert info["progress"] == 100 and info["processingTime"] > 0 and info["imagesCount"] == 6
    assert "errorMessage" not in info["status"]
    response = requests.get(node.api(f"/task/{task_uuid}/download/all.zip"), headers={"Range": "bytes=0-99"},
                            timeout=30)
    assert response.status_code == 200 and "Accept-Ranges" not in response.headers
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"] == "attachment; filename=all.zip"
    assert int(response.headers["Content-Length"]) == len(response.content)
    names = zip_names(response.content)
    assert {"odm_orthophoto/odm_orthophoto.tif", "odm_dem/dsm.tif", "entwine_pointcloud/ept.json"} <= names


def test_skip_post_processing_adds_no_options_and_no_ept(fast_node: DevNode, finished: dict) -> None:
    node = fast_node
    info = task_info(node, finished["skip"])
    assert {o["name"] for o in info["options"]}.isdisjoint({"pc-ept", "cog", "gltf"})
    content = requests.get(node.api(f"/task/{finished['skip']}/download/all.zip"), timeout=30).content
    names = zip_names(content)
    assert "odm_orthophoto/odm_orthophoto.tif" in names
    assert not any(n.startswith("entwine_pointcloud/") for n in names)


def test_outputs_field_limits_all_zip(fast_node: DevNode, finished: dict) -> None:
    node = fast_node
    content = requests.get(node.api(f"/task/{finished['outputs']}/download/all.zip"), timeout=30).content
    names = zip_names(content)
    assert "images.json" in names and "odm_orthophoto/odm_orthophoto.tif" in names
    assert all(n == "images.json" or n.startswith("odm_orthophoto/") for n in names)


def test_progress_rises_and_output_grows_line_by_line(devnode_factory: Any, sample_images: list[Path]) -> None:
    node = devnode_factory(seconds_per_image=0.3)
    task_uuid = create_task(node, sample_images)
    progress, lengths = [], []
    while (info := task_info(node, task_uuid, with_output=0))["status"]["code"] == RUNNING and info["progress"] < 90:
        progress.append(info["progress"])
        lengths.append(len(info["output"]))
        time.sleep(0.1)
    assert progress == sorted(progress) and len(set(progress)) >= 5
    assert lengths == sorted(lengths) and len(set(lengths)) >= 5
    output = get(node, f"/task/{task_uuid}/output")
    assert get(node, f"/task/{task_uuid}/output", line=3) == output[3:]
    assert get(node, f"/task/{task_uuid}/output", line=-2) == output[-2:]
    assert task_info(node, task_uuid, with_output=5)["output"] == output[5:]
    assert "output" not in task_info(node, task_uuid)
    assert any("Running opensfm stage" in line for line in output)
    post(node, "/task/cancel", data={"uuid": task_uuid})


# ---- queue, slots and memory ---------------------------------------------------------------------------

def test_tasks_beyond_slots_wait_and_memory_falls_while_running(devnode_factory: Any,
                                                                 sample_images: list[Path]) -> None:
    node = devnode_factory(slots=1, seconds_per_image=5, memory_gb=8)
    idle = get(node, "/info")["availableMemory"]
    first, second, third = (create_task(node, sample_images[:2]) for _ in range(3))
    assert [task_info(node, u)["status"]["code"] for u in (first, second, third)] == [RUNNING, QUEUED, QUEUED]
    info = get(node, "/info")
    assert info["taskQueueCount"] == 3
    assert info["availableMemory"] < idle - 1024 ** 3  # two images need ~2 GB by the shared model

    assert post(node, "/task/cancel", data={"uuid": first}) == {"success": True}
    assert task_info(node, first)["status"]["code"] == CANCELED
    assert wait_for(node, second, (RUNNING,))["status"]["code"] == RUNNING  # the freed slot is taken
    assert get(node, "/info")["taskQueueCount"] == 2
    for task_uuid in (second, third):
        post(node, "/task/cancel", json_body={"uuid": task_uuid})  # JSON bodies work too
    info = get(node, "/info")
    assert info["taskQueueCount"] == 0 and info["availableMemory"] == idle


def test_cancel_restart_remove(devnode_factory: Any, sample_images: list[Path], webhook: WebhookReceiver) -> None:
    node = devnode_factory(seconds_per_image=2)
    task_uuid = create_task(node, sample_images[:2], webhook=webhook.url)
    wait_for(node, task_uuid, (RUNNING,))
    assert post(node, "/task/restart", data={"uuid": task_uuid}) == \
        {"success": False, "error": "Task cannot be restarted"}
    assert post(node, "/task/cancel", data={"uuid": task_uuid}) == {"success": True}
    assert post(node, "/task/cancel", data={"uuid": task_uuid}) == {"success": True}  # already: nothing to do
    assert webhook.next()["status"]["code"] == CANCELED  # a run that ends, ends with a webhook call

    options = json.dumps([{"name": "pc-quality", "value": "low"}])
    assert post(node, "/task/restart", data={"uuid": task_uuid, "options": options}) == {"success": True}
    info = task_info(node, task_uuid, with_output=0)
    assert info["status"]["code"] in (QUEUED, RUNNING) and info["progress"] < 100
    assert info["options"][0] == {"name": "pc-quality", "value": "low"}
    assert post(node, "/task/restart", data={"uuid": task_uuid, "options": json.dumps(
        [{"name": "pc-quality", "value": "nope"}])})["error"].startswith("[{")

    assert post(node, "/task/remove", data={"uuid": task_uuid}) == {"success": True}
    assert get(node, f"/task/{task_uuid}/info") == {"error": f"{task_uuid} not found"}
    assert {"uuid": task_uuid} not in get(node, "/task/list")
    assert not (node.data_dir / task_uuid).exists()


# ---- flags ---------------------------------------------------------------------------------------------

def test_token_is_required_everywhere_but_auth_and_never_logged(devnode_factory: Any) -> None:
    node = devnode_factory(token="s3cret-t0ken")
    assert get(node, "/info")["engine"] == "odx"
    refused = {"error": "Invalid authentication token: token does not match."}
    for query in ("", "?token=wrong"):
        assert requests.get(f"{node.url}/info{query}", timeout=5).json() == refused
        assert requests.get(f"{node.url}/options{query}", timeout=5).json() == refused
        assert requests.get(f"{node.url}/task/list{query}", timeout=5).json() == refused
        assert requests.post(f"{node.url}/task/new/init{query}", timeout=5).json() == refused
        assert requests.post(f"{node.url}/task/cancel{query}", data={"uuid": "x"}, timeout=5).json() == refused
    assert requests.get(f"{node.url}/auth/info", timeout=5).json()["loginUrl"] is None
    node.stop()
    assert "s3cret-t0ken" not in node.log()


def test_max_images_fails_the_task_at_commit_and_refuses_task_new(devnode_factory: Any,
                                                                   sample_images: list[Path]) -> None:
    node = devnode_factory(max_images=3, seconds_per_image=10)
    assert get(node, "/info")["maxImages"] == 3
    task_uuid = create_task(node, sample_images[:4])
    info = wait_for(node, task_uuid, ENDED)
    assert info["status"] == {"code": FAILED,
                              "errorMessage": "4 images uploaded, but this node can only process up to 3."}
    assert post(node, "/task/new", files=image_files(sample_images[:4])) == \
        {"error": "4 images uploaded, but this node can only process up to 3."}
    assert wait_for(node, create_task(node, sample_images[:3]), (RUNNING,))


def test_fail_tasks_fails_with_a_message_and_calls_the_webhook(devnode_factory: Any, sample_images: list[Path],
                                                               webhook: WebhookReceiver) -> None:
    node = devnode_factory(fail_tasks=True)
    task_uuid = create_task(node, sample_images[:2], webhook=webhook.url)
    info = wait_for(node, task_uuid, ENDED)
    assert info["status"] == {"code": FAILED, "errorMessage": "Cannot process dataset"}
    assert info["progress"] == 100
    call = webhook.next()
    assert call["uuid"] == task_uuid and call["status"]["code"] == FAILED and call["images"] == []
    assert get(node, f"/task/{task_uuid}/download/all.zip") == {"error": "Asset not ready"}


def test_drop_uploads_answers_500_on_upload_only(devnode_factory: Any, sample_images: list[Path]) -> None:
    node = devnode_factory(drop_uploads=1.0)
    task_uuid = post(node, "/task/new/init")["uuid"]
    response = requests.post(node.api(f"/task/new/upload/{task_uuid}"), files=image_files(sample_images[:1]),
                             timeout=10)
    assert response.status_code == 500
    assert post(node, f"/task/new/commit/{task_uuid}") == {"error": "Need at least 1 file."}


def test_range_flag_answers_206(devnode_factory: Any, sample_images: list[Path]) -> None:
    node = devnode_factory(range=True, seconds_per_image=0)
    task_uuid = create_task(node, sample_images[:2], skipPostProcessing="true")
    assert wait_for(node, task_uuid, ENDED, timeout=60)["status"]["code"] == COMPLETED
    url = node.api(f"/task/{task_uuid}/download/all.zip")
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(url, headers={"Range": "bytes=10-109"}, timeout=30)
    assert part.status_code == 206 and part.content == whole.content[10:110]
    assert part.headers["Content-Range"] == f"bytes 10-109/{len(whole.content)}"


def test_die_after_exits_while_the_task_runs(devnode_factory: Any, sample_images: list[Path]) -> None:
    node = devnode_factory(die_after=1, seconds_per_image=0.5)
    create_task(node, sample_images[:2])
    assert node.wait_exit(timeout=10) == 3
    with pytest.raises(requests.ConnectionError):
        requests.get(node.api("/info"), timeout=2)


def test_options_file_and_environment_variables(devnode_factory: Any, tmp_path: Path) -> None:
    options = [{"name": "dsm", "type": "bool", "value": "false", "domain": "bool", "help": "Make a DSM"}]
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps(options))
    node = devnode_factory(options_file=options_file, slots=2,
                           env={"ODX_DEVNODE_SLOTS": "5", "ODX_DEVNODE_MAX_IMAGES": "7",
                                "ODX_DEVNODE_MEMORY_GB": "2"})
    info = get(node, "/info")
    assert info["maxParallelTasks"] == 2  # the flag wins over the environment
    assert info["maxImages"] == 7 and info["totalMemory"] == 2 * 1024 ** 3
    assert get(node, "/options") == options


def test_cli_names_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_name("--seconds-per-image") == "ODX_DEVNODE_SECONDS_PER_IMAGE"
    monkeypatch.setenv("ODX_DEVNODE_RANGE", "yes")
    monkeypatch.setenv("ODX_DEVNODE_DROP_UPLOADS", "0.25")
    args = build_parser().parse_args([])
    assert args.range is True and args.drop_uploads == 0.25 and args.host == "127.0.0.1"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--drop-uploads", "2"])
    version = subprocess.run([sys.executable, "-m", "devnode", "--version"], capture_output=True, text=True,
                             timeout=30, check=True)
    assert "NodeODX API 2.2.1" in version.stdout
