"""Creating tasks and reading them, directly on NodeODX and through the relay: `/task/new/init` and each of
its fields, `set-uuid`, `/task/new/upload`, `/task/new/commit`, one-shot `/task/new`, `/task/{uuid}/info`
(`with_output`), `/task/{uuid}/output` (`line`), `/task/{uuid}/download/all.zip` (and `outputs`), and
the webhook. Every test sends the same requests to both sides and compares the answers."""
from __future__ import annotations

import json
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from testkit.servers import WebhookReceiver
from tests.conformance.sides import (
    COMPLETED,
    Cluster,
    Mismatches,
    Side,
    answer,
    assert_same_info,
    image_parts,
    json_of,
    media_type,
    multipart,
    option_map,
    pretty,
    zip_names,
)

pytestmark = pytest.mark.slow

CREATED = 1700000000000
OPTIONS = json.dumps([{"name": "dsm", "value": True}, {"name": "orthophoto-resolution", "value": "7.5"},
                      {"name": "feature-quality", "value": "low"}])
ORTHOPHOTO = "odm_orthophoto/odm_orthophoto.tif"

# Each variant of /task/new/init's multipart fields: sent to both sides, the task's info compared. Variants
# about another field give a name, so that a difference in naming shows in the name variants only.
VARIANTS: dict[str, dict[str, str]] = {
    "all-fields": {"name": "Conformance: all fields", "options": OPTIONS, "dateCreated": str(CREATED),
                   "skipPostProcessing": "true"},
    "no-fields": {},
    "empty-name": {"name": ""},
    "unicode-name": {"name": "Tempelhofer Feld – Süd ✈"},
    **{variant: {"name": variant, **fields} for variant, fields in {
        "skip-post-processing-false": {"skipPostProcessing": "false"},
        "skip-post-processing-1": {"skipPostProcessing": "1"},
        "options-empty-list": {"options": "[]"},
        "date-created-float": {"dateCreated": f"{CREATED}.9"},
        "date-created-not-a-number": {"dateCreated": "yesterday"},
        "outputs": {"outputs": json.dumps([ORTHOPHOTO])},
    }.items()},
}


def start_variant(side: Side, fields: dict[str, str], images: list[Path]) -> str | dict:
    """init (with `fields`), upload, commit: the uuid, or the first answer that was not a step forward."""
    created = side.init(fields)
    if "uuid" not in created:
        return {"init": created}
    uuid = created["uuid"]
    uploaded = side.upload(uuid, images)
    if uploaded != {"success": True}:
        return {"upload": uploaded}
    committed = side.commit(uuid)
    return uuid if committed == {"uuid": uuid} else {"commit": committed}


@pytest.fixture(scope="module")
def variant_tasks(cluster: Cluster, sample_images: list[Path]) -> dict[str, tuple[Any, Any]]:
    """Every variant's task on both sides, all submitted up front so that they run side by side."""
    return {name: cluster.both(lambda side: start_variant(side, fields, sample_images[:3]))
            for name, fields in VARIANTS.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_init_fields_reach_the_task(cluster: Cluster, variant_tasks: dict, variant: str) -> None:
    uuids = variant_tasks[variant]
    assert all(isinstance(u, str) for u in uuids), f"{variant}: direct {uuids[0]}, relay {uuids[1]}"
    direct, relay = cluster.each(Side.wait, uuids)
    assert direct["status"]["code"] == COMPLETED, direct
    assert_same_info(direct, relay)
    assert direct["imagesCount"] == 3
    given = VARIANTS[variant].get("dateCreated", "")
    if given[:1].isdigit():
        assert relay["dateCreated"] == direct["dateCreated"] == CREATED


@pytest.mark.parametrize("body", ["url-encoded", "json"])
def test_init_reads_multipart_fields_only(cluster: Cluster, sample_images: list[Path], body: str) -> None:
    """NodeODX reads init fields with multer().none(): fields sent any other way are dropped silently. (The
    task then has no name: how that looks is the `no-fields` variant's business; here, the options.)"""
    fields = {"name": "not read", "options": json.dumps([{"name": "orthophoto-resolution", "value": 11}])}

    def init_and_wait(side: Side) -> dict:
        sent = {"json": fields} if body == "json" else {"data": fields}
        uuid = json_of(side.post("/task/new/init", **sent))["uuid"]
        assert side.upload(uuid, sample_images[:3]) == {"success": True}
        assert side.commit(uuid) == {"uuid": uuid}
        return side.wait(uuid)

    direct, relay = cluster.both(init_and_wait)
    assert "orthophoto-resolution" not in option_map(direct["options"]) and direct.get("name") != "not read"
    assert option_map(relay["options"]) == option_map(direct["options"])
    assert relay.get("name") != "not read"
    assert (relay["status"], relay["imagesCount"]) == (direct["status"], direct["imagesCount"])


def test_info_with_output_and_output_lines(cluster: Cluster, done_task: tuple[str, str]) -> None:
    def read(side: Side, uuid: str) -> dict[str, Any]:
        return {"info": side.info(uuid), "with_output": side.info(uuid, with_output=0),
                "with_output_5": side.info(uuid, with_output=5),
                "output": json_of(side.get(f"/task/{uuid}/output")),
                **{f"line={line}": json_of(side.get(f"/task/{uuid}/output", line=line))
                   for line in ("3", "-2", "abc", "100000")}}

    direct, relay = cluster.each(read, done_task)
    assert_same_info(direct["info"], relay["info"])
    assert "output" not in relay["info"] and "output" not in direct["info"]
    assert direct["with_output"]["output"] == direct["output"] and direct["output"], direct["output"]
    for key in ("with_output", "with_output_5"):
        assert_same_info(direct[key], relay[key])
        assert relay[key]["output"] == direct[key]["output"], key
    for key in ("output", "line=3", "line=-2", "line=abc", "line=100000"):
        assert relay[key] == direct[key], f"{key}: direct {pretty(direct[key])}\nrelay {pretty(relay[key])}"
    assert direct["line=-2"] == direct["output"][-2:] and direct["line=100000"] == []


def test_download_all_zip(cluster: Cluster, done_task: tuple[str, str]) -> None:
    """Twice: the relay may serve the second from its cache, and it must look the same."""
    seen = Mismatches()
    for attempt in ("first", "second"):
        direct, relay = cluster.each(lambda side, uuid: side.get(f"/task/{uuid}/download/all.zip"), done_task)
        assert direct.status_code == 200 and media_type(direct) == "application/zip"
        assert direct.headers["Content-Disposition"] == "attachment; filename=all.zip"
        assert int(direct.headers["Content-Length"]) == len(direct.content)
        assert ORTHOPHOTO in zip_names(direct.content)
        seen.same(f"{attempt} download: status, media type", answer(direct)[:2], answer(relay)[:2])
        seen.same(f"{attempt} download: Content-Disposition (quotes aside)", direct.headers["Content-Disposition"],
                  relay.headers.get("Content-Disposition", "").replace('"', ""))
        seen.same(f"{attempt} download: Content-Length is the body's", True,
                  relay.headers.get("Content-Length") == str(len(relay.content)))
        seen.same(f"{attempt} download: files in the zip", zip_names(direct.content), zip_names(relay.content))
    seen.check()


def test_all_zip_honours_outputs(cluster: Cluster, variant_tasks: dict) -> None:
    uuids = variant_tasks["outputs"]
    assert all(isinstance(u, str) for u in uuids), uuids
    cluster.each(Side.wait, uuids)
    direct, relay = cluster.each(lambda side, uuid: side.get(f"/task/{uuid}/download/all.zip"), uuids)
    assert zip_names(direct.content) == [ORTHOPHOTO]
    assert zip_names(relay.content) == [ORTHOPHOTO]


def test_unknown_uuids_and_assets(cluster: Cluster, done_task: tuple[str, str]) -> None:
    unknown = str(uuidlib.uuid4())
    for path in (f"/task/{unknown}/info", f"/task/{unknown}/output", f"/task/{unknown}/download/all.zip",
                 "/task/not-a-uuid/info", "/task/not-a-uuid/output", "/task/not-a-uuid/download/all.zip"):
        direct, relay = cluster.both(lambda side: answer(side.get(path)))
        assert relay == direct, f"GET {path}: direct {direct}, relay {relay}"
        assert direct[2] == {"error": f"{path.split('/')[2]} not found"}
    direct, relay = cluster.each(lambda side, uuid: answer(side.get(f"/task/{uuid}/download/nonsense.bin")), done_task)
    assert relay == direct == (200, "application/json", {"error": "Invalid asset"})


def test_uuids_are_case_sensitive(cluster: Cluster, sample_images: list[Path]) -> None:
    """NodeODX keeps a `set-uuid` as given (its check ignores case) and finds tasks by the exact string."""
    wanted = str(uuidlib.uuid4()).upper()
    uuids = cluster.both(lambda side: side.submit(sample_images[:3], headers={"set-uuid": wanted}))
    assert uuids == (wanted, wanted)
    cluster.each(Side.wait, uuids)
    lower = wanted.lower()
    direct, relay = cluster.both(lambda side: answer(side.get(f"/task/{lower}/info")))
    assert relay == direct == (200, "application/json", {"error": f"{lower} not found"})


def test_set_uuid(cluster: Cluster, sample_images: list[Path]) -> None:
    wanted = (str(uuidlib.uuid4()), str(uuidlib.uuid4()))
    uuids = cluster.each(lambda side, uuid: side.submit(sample_images[:3], headers={"set-uuid": uuid}), wanted)
    assert uuids == wanted
    again = cluster.each(lambda side, uuid: side.init({"name": "again"}, headers={"set-uuid": uuid}), wanted)
    assert again == tuple({"error": f"Invalid set-uuid: {uuid}"} for uuid in wanted)
    for bad in ("not-a-uuid", "12345678-1234-1234-1234-123456789012", str(uuidlib.uuid4())[:-1]):
        direct, relay = cluster.both(lambda side: side.init({"name": "bad"}, headers={"set-uuid": bad}))
        assert relay == direct == {"error": f"Invalid set-uuid: {bad}"}
    cluster.each(Side.wait, uuids)


@pytest.mark.parametrize("options", [
    json.dumps([{"name": "feature-quality", "value": "nonsense"}]),
    json.dumps([{"name": "orthophoto-resolution", "value": "-3"}]),
    "this is not JSON",
])
def test_init_refuses_invalid_options(cluster: Cluster, options: str) -> None:
    """Both refuse at init with an error (the wording is the relay's own: see `options-checked-early`)."""
    direct, relay = cluster.both(lambda side: side.init({"name": "bad options", "options": options}))
    assert set(direct) == set(relay) == {"error"}, (direct, relay)
    assert isinstance(direct["error"], str) and isinstance(relay["error"], str)


def test_upload_and_commit_answers(cluster: Cluster, sample_images: list[Path]) -> None:
    """Every answer of the upload steps, step by step, as NodeODX gives it (errors included)."""
    unknown = str(uuidlib.uuid4())

    def steps(side: Side) -> list[tuple[str, Any]]:
        seen: list[tuple[str, Any]] = []
        uuid = ""

        def step(what: str, response) -> None:  # the side's own uuid reads "<uuid>", so both sides compare
            seen.append((what, json.loads(json.dumps(answer(response), default=repr).replace(uuid or "?", "<uuid>"))))

        step("upload to unknown uuid", side.post(f"/task/new/upload/{unknown}", files=image_parts(sample_images[:1])))
        step("commit unknown uuid", side.post(f"/task/new/commit/{unknown}"))
        uuid = side.init({"name": "steps"})["uuid"]
        step("info before commit", side.get(f"/task/{uuid}/info"))
        step("upload without images", side.post(f"/task/new/upload/{uuid}", files=multipart({"other": "x"})))
        step("upload with no body", side.post(f"/task/new/upload/{uuid}"))
        step("commit without images", side.post(f"/task/new/commit/{uuid}"))
        step("upload after a refused commit",
             side.post(f"/task/new/upload/{uuid}", files=image_parts(sample_images[:1])))
        uuid = side.init({"name": "steps"})["uuid"]
        step("upload 2 images", side.post(f"/task/new/upload/{uuid}", files=image_parts(sample_images[:2])))
        step("upload 1 more image", side.post(f"/task/new/upload/{uuid}", files=image_parts(sample_images[2:3])))
        step("cancel before commit", side.post("/task/cancel", data={"uuid": uuid}))
        step("commit", side.post(f"/task/new/commit/{uuid}"))
        step("commit again", side.post(f"/task/new/commit/{uuid}"))
        step("upload after commit", side.post(f"/task/new/upload/{uuid}", files=image_parts(sample_images[:1])))
        side.wait(uuid)
        return seen

    direct, relay = cluster.both(steps)
    seen = Mismatches()
    for (what, expected), (_, got) in zip(direct, relay):
        seen.same(what, expected, got)
    seen.check()


def test_one_shot_task_new(cluster: Cluster, sample_images: list[Path]) -> None:
    wanted = (str(uuidlib.uuid4()), str(uuidlib.uuid4()))
    fields = {"name": "Conformance: one shot", "options": OPTIONS, "dateCreated": str(CREATED),
              "outputs": json.dumps([ORTHOPHOTO, "odm_dem/dsm.tif"])}

    def one_shot(side: Side, uuid: str) -> Any:
        return json_of(side.post("/task/new", files=multipart(fields) + image_parts(sample_images[:4]),
                                 headers={"set-uuid": uuid}))

    created = cluster.each(one_shot, wanted)
    assert created == tuple({"uuid": uuid} for uuid in wanted)
    direct, relay = cluster.each(Side.wait, wanted)
    assert direct["status"]["code"] == COMPLETED and direct["imagesCount"] == 4
    assert_same_info(direct, relay)
    assert relay["dateCreated"] == direct["dateCreated"] == CREATED
    zips = cluster.each(lambda side, uuid: side.get(f"/task/{uuid}/download/all.zip").content, wanted)
    assert zip_names(zips[1]) == zip_names(zips[0]) == sorted([ORTHOPHOTO, "odm_dem/dsm.tif"])


def test_one_shot_without_images(cluster: Cluster) -> None:
    for name, kwargs in (("no body", {}), ("fields only", {"files": multipart({"name": "nothing"})}),
                         ("url-encoded", {"data": {"name": "nothing"}})):
        direct, relay = cluster.both(lambda side: answer(side.post("/task/new", **kwargs)))
        assert relay == direct == (200, "application/json", {"error": "Need at least 1 file or a zip file url."}), name


def calls_of_one_end(hook: WebhookReceiver, quiet: float = 3) -> list[Any]:
    """The next call (waited for), and any other that comes within `quiet` seconds: NodeODX calls once per
    end and retries only failed calls, so any second one is one too many."""
    calls = [hook.next(timeout=20)]
    time.sleep(quiet)
    while not hook.calls.empty():
        calls.append(hook.next(timeout=0))
    return calls


def test_webhook_called_exactly_once(cluster: Cluster, sample_images: list[Path]) -> None:
    """Once with the task's final info when it ends, and once more when it ends again after a restart."""
    receivers = (WebhookReceiver(), WebhookReceiver())
    seen = Mismatches()
    try:
        uuids = cluster.each(lambda side, hook: side.submit(sample_images[:3], {"name": "hooked", "webhook": hook.url}),
                             receivers)
        for end in ("first end", "end after a restart"):
            if end != "first end":
                assert cluster.each(lambda side, uuid: side.task_post("/task/restart", {"uuid": uuid}), uuids) == \
                    ({"success": True},) * 2
            infos = cluster.each(Side.wait, uuids)
            calls = cluster.each(lambda side, hook: calls_of_one_end(hook), receivers)
            assert len(calls[0]) == 1, f"{end}: NodeODX called {len(calls[0])} times"
            seen.same(f"{end}: number of calls", 1, len(calls[1]))
            direct, relay = calls[0][0], calls[1][-1]
            assert (direct["uuid"], relay["uuid"]) == uuids and direct["status"]["code"] == COMPLETED
            seen.same(f"{end}: keys of the call", sorted(direct), sorted(relay))
            seen.same(f"{end}: images", direct.get("images"), relay.get("images"))
            seen.same_info(f"{end}: the calls", {k: v for k, v in direct.items() if k != "images"},
                           {k: v for k, v in relay.items() if k != "images"})
            for side, call, info in zip(cluster.sides, (direct, relay), infos):  # the call carries the final info
                seen.same(f"{end}: {side}'s call vs its final info",
                          {k: v for k, v in info.items() if k != "processingTime"},
                          {k: v for k, v in call.items() if k not in ("images", "processingTime")})
    finally:
        for hook in receivers:
            hook.close()
    seen.check()
