"""The intended differences (differences.py): each shown by a test marked `@difference(id)`, the list
checked against README.md's table, and every entry covered by at least one test of this suite."""
from __future__ import annotations

import json
import re
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
import requests

from testkit.servers import REPO
from tests.conformance.differences import BY_ID, DIFFERENCES, difference
from tests.conformance.sides import (
    COMPLETED,
    FAILED,
    TOKEN_ERROR,
    ZIPURL_PRIVATE_FLAG,
    Cluster,
    Side,
    answer,
    json_of,
    multipart,
    option_map,
)

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
README = REPO / "README.md"
SECTION = "Where the relay differs from NodeODX"
MARK = re.compile(r"""@difference\(\s*["']([^"']+)["']\s*\)""")


# --- the list itself --------------------------------------------------------------------------------
def readme_rows() -> list[tuple[str, str, str]]:
    """The rows of the README table under the heading SECTION: (id, what, why), ids without backticks."""
    lines = README.read_text(encoding="utf-8").splitlines()
    heading = next((i for i, line in enumerate(lines) if line.lstrip("#").strip() == SECTION and line.startswith("#")),
                   None)
    assert heading is not None, f"README.md has no heading {SECTION!r}"
    rows, in_table = [], False
    for line in lines[heading + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]  # no cell here holds a "|"
            if in_table and not set("".join(cells)) <= set("-: "):
                rows.append((cells[0].strip("`"), *cells[1:]))
            in_table = True
        elif in_table and rows:
            break
    return rows


def readme_table() -> str:
    """The table as it must stand in README.md (printed when it does not)."""
    lines = ["| id | what differs | why |", "|---|---|---|"]
    lines += [f"| `{d.id}` | {d.what} | {d.why} |" for d in DIFFERENCES]
    return "\n".join(lines)


def test_readme_table_lists_exactly_the_differences() -> None:
    expected = [(d.id, d.what, d.why) for d in DIFFERENCES]
    assert readme_rows() == expected, f"README.md's table under {SECTION!r} must be:\n\n{readme_table()}\n"


def test_every_difference_is_shown_by_a_test() -> None:
    marked = {match for path in HERE.glob("test_*.py") for match in MARK.findall(path.read_text(encoding="utf-8"))}
    assert marked - set(BY_ID) == set(), "tests mark differences that differences.py does not list"
    assert set(BY_ID) - marked == set(), "differences no test shows"


def test_the_zipurl_flag_is_named_as_documented() -> None:
    flag = "--" + ZIPURL_PRIVATE_FLAG.replace("_", "-")
    assert f"`{flag}`" in BY_ID["zipurl-private-refused"].what


# --- each difference, shown ---------------------------------------------------------------------------
@difference("info-relay-key")
def test_info_has_a_relay_key(cluster: Cluster) -> None:
    direct, relay = cluster.both(lambda side: json_of(side.get("/info")))
    assert "relay" not in direct
    assert set(relay) - set(direct) == {"relay"}
    assert relay["relay"]["nodes"] == relay["relay"]["online"] == len(cluster.nodes)
    assert {"version", "offline", "locked", "queued"} <= set(relay["relay"])


@difference("info-cluster-totals")
def test_info_numbers_are_the_cluster_totals(cluster: Cluster) -> None:
    direct, relay = cluster.both(lambda side: side.idle())
    nodes = [json_of(requests.get(f"{node.url}/info", params={"token": cluster.node_token}, timeout=30))
             for node in cluster.nodes]
    for key in ("cpuCores", "totalMemory", "maxParallelTasks", "taskQueueCount"):
        assert relay[key] == sum(node[key] for node in nodes), key
    assert relay["cpuCores"] == 2 * direct["cpuCores"] and relay["totalMemory"] == 2 * direct["totalMemory"]
    assert relay["version"] == min(node["version"] for node in nodes)


@difference("auth-info-message")
def test_auth_info_message_and_accounts(cluster: Cluster, another_relay) -> None:
    direct, relay = cluster.both(lambda side: json_of(side.get("/auth/info", token="")))
    assert direct["message"] == "Authentication not available on this node"
    assert relay["message"] == "Accounts are not enabled on this relay"
    accounts = json_of(another_relay(allow_registration=True).get("/auth/info", token=""))
    assert set(accounts) == set(direct)
    assert (accounts["loginUrl"], accounts["registerUrl"]) == ("/auth/login", "/auth/register")


TOKEN_CALLS = [
    ("GET", "/info", {}), ("GET", "/options", {}), ("GET", "/task/list", {}),
    ("GET", "/task/{uuid}/info", {}), ("GET", "/task/{uuid}/output", {}), ("GET", "/task/{uuid}/download/all.zip", {}),
    ("POST", "/task/new/init", {"files": multipart({"name": "no token"})}),
    ("POST", "/task/new/upload/{uuid}", {"files": [("images", ("a.jpg", b"x", "image/jpeg"))]}),
    ("POST", "/task/new/commit/{uuid}", {}),
    ("POST", "/task/new", {"files": multipart({"name": "no token"})}),
    ("POST", "/task/cancel", {"data": {"uuid": "{uuid}"}}),
    ("POST", "/task/remove", {"data": {"uuid": "{uuid}"}}),
    ("POST", "/task/restart", {"data": {"uuid": "{uuid}"}}),
]


@pytest.fixture(scope="module")
def token_target(cluster: Cluster, sample_images: list[Path]) -> tuple[str, str]:
    """A completed task per side that the token tests aim at (and must leave as it is)."""
    uuids = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "token target"}))
    cluster.each(Side.wait, uuids)
    return uuids


@difference("token-errors-http-status")
@pytest.mark.parametrize("method,path,kwargs", TOKEN_CALLS, ids=[f"{m} {p}" for m, p, _ in TOKEN_CALLS])
def test_token_errors(cluster: Cluster, token_target: tuple[str, str], method: str, path: str, kwargs: dict) -> None:
    def call(side: Side, uuid: str, token: str) -> tuple:
        body = {k: ({f: v.format(uuid=uuid) for f, v in v.items()} if k == "data" else v) for k, v in kwargs.items()}
        return answer(requests.request(method, side.url(path.format(uuid=uuid), token=token), timeout=30, **body))

    for token, relay_status in (("", 401), ("wrong-token", 403)):
        direct, relay = cluster.each(lambda side, uuid: call(side, uuid, token), token_target)
        assert direct == (200, "application/json", {"error": TOKEN_ERROR}), (token, direct)
        assert relay[:2] == (relay_status, "application/json"), (token, relay)
        assert set(relay[2]) == {"error"} and isinstance(relay[2]["error"], str), (token, relay)
    node_token = call(cluster.relay, token_target[1], cluster.node_token)  # a node's token is no relay token
    assert node_token[:2] == (403, "application/json") and set(node_token[2]) == {"error"}, node_token
    infos = cluster.each(Side.info, token_target)  # nothing was done to the task
    assert [info["status"]["code"] for info in infos] == [COMPLETED, COMPLETED]


@difference("options-checked-early")
def test_options_checked_early(cluster: Cluster, sample_images: list[Path]) -> None:
    to_restart = cluster.both(lambda side: side.submit(sample_images[:3], {"name": "restart with an unknown option"}))
    unknown = json.dumps([{"name": "no-such-option", "value": True}, {"name": "dsm", "value": True}])
    direct, relay = cluster.both(lambda side: side.init({"name": "unknown option", "options": unknown}))
    assert "uuid" in direct
    assert set(relay) == {"error"} and "no-such-option" in relay["error"]
    assert cluster.direct.upload(direct["uuid"], sample_images[:3]) == {"success": True}
    assert cluster.direct.commit(direct["uuid"]) == {"uuid": direct["uuid"]}
    options = option_map(cluster.direct.wait(direct["uuid"])["options"])
    assert options["dsm"] is True and "no-such-option" not in options  # dropped silently

    cluster.each(Side.wait, to_restart)
    direct, relay = cluster.each(lambda side, uuid: side.task_post("/task/restart", {"uuid": uuid, "options": unknown}),
                                 to_restart)
    assert direct == {"success": True}
    assert set(relay) == {"error"} and "no-such-option" in relay["error"]
    assert "no-such-option" not in option_map(cluster.direct.wait(to_restart[0])["options"])

    invalid = json.dumps([{"name": "feature-quality", "value": "nonsense"}])
    direct, relay = cluster.both(lambda side: side.init({"name": "invalid value", "options": invalid}))
    assert json.loads(direct["error"]) == [{"name": "feature-quality", "error": "Invalid value nonsense (not in enum)"}]
    assert "feature-quality" in relay["error"]

    as_object = json.dumps({"dsm": True})  # NodeODX ignores options that are not a list, without a word
    direct, relay = cluster.both(lambda side: side.init({"name": "options as an object", "options": as_object}))
    assert "uuid" in direct
    assert relay == {"error": 'Invalid options: expected a JSON list of {"name": ..., "value": ...} objects'}


@difference("image-count-checked-early")
def test_one_image_is_refused_at_commit(cluster: Cluster, sample_images: list[Path]) -> None:
    def one_image(side: Side) -> dict:
        uuid = side.init({"name": "one image"})["uuid"]
        assert side.upload(uuid, sample_images[:1]) == {"success": True}
        return side.commit(uuid)

    direct, relay = cluster.both(one_image)
    assert set(direct) == {"uuid"}
    assert set(relay) == {"error"} and "image" in relay["error"].lower()
    assert cluster.direct.wait(direct["uuid"])["status"]["code"] == COMPLETED  # test mode processes it anyway


@difference("image-count-checked-early")
def test_too_many_images_are_refused_at_commit(own_pair, sample_images: list[Path]) -> None:
    cluster = own_pair(max_images=3)

    def four_images(side: Side) -> dict:
        uuid = side.init({"name": "four images"})["uuid"]
        assert side.upload(uuid, sample_images[:4]) == {"success": True}
        return side.commit(uuid)

    direct, relay = cluster.both(four_images)
    assert set(direct) == {"uuid"}
    failed = cluster.direct.wait(direct["uuid"])
    assert failed["status"] == {"code": FAILED,
                                "errorMessage": "4 images uploaded, but this node can only process up to 3."}
    assert set(relay) == {"error"} and "3" in relay["error"], relay


@difference("range-206")
def test_range_requests(cluster: Cluster, done_task: tuple[str, str]) -> None:
    ranged = cluster.each(lambda side, uuid: side.get(f"/task/{uuid}/download/all.zip",
                                                      headers={"Range": "bytes=0-99"}),
                          done_task)
    whole = cluster.each(lambda side, uuid: side.get(f"/task/{uuid}/download/all.zip"), done_task)
    direct, relay = ranged
    assert direct.status_code == 200 and direct.content == whole[0].content and len(direct.content) > 100
    assert relay.status_code == 206 and relay.content == whole[1].content[:100]
    assert relay.headers["Content-Range"] == f"bytes 0-99/{len(whole[1].content)}"
    assert "Accept-Ranges" not in whole[0].headers and whole[1].headers["Accept-Ranges"] == "bytes"


@difference("single-assets")
def test_single_assets_by_name(cluster: Cluster, done_task: tuple[str, str]) -> None:
    direct, relay = cluster.each(lambda side, uuid: side.get(f"/task/{uuid}/download/orthophoto.tif"), done_task)
    assert answer(direct) == (200, "application/json", {"error": "Invalid asset"})
    assert relay.status_code == 200
    whole = cluster.relay.get(f"/task/{done_task[1]}/download/all.zip").content
    with zipfile.ZipFile(BytesIO(whole)) as archive:
        assert relay.content == archive.read("odm_orthophoto/odm_orthophoto.tif")

