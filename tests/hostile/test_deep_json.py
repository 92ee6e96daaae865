"""JSON nested absurdly deep, wherever the relay reads JSON from a client (`options`, a JSON option's value,
`outputs`, JSON command and login bodies): a clear `{"error": ...}` as NodeODX errors look, never a 500
(Python's parser raises RecursionError past about a thousand levels), and nothing kept on disk."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from shared.options import MAX_JSON_DEPTH, loads_limited, parse_options_field
from tests.hostile.hostile_helpers import CLIENT_TOKEN, Hostile, with_token
from tests.relay.relay_helpers import COMPLETED, form_data, init_task, post_json, submit, wait_status

DEEP = "[" * 100_000 + "]" * 100_000  # what the outside tester sent
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000
RATHER_DEEP = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)  # parses in Python, still refused


def deep_options(depth_text: str) -> str:
    return json.dumps([{"name": "dsm", "value": True}])[:-1] + ", " + depth_text + "]"


def assert_refused(answer: dict, what: str = "") -> None:
    assert set(answer) == {"error"}, answer
    assert "nested" in answer["error"] and "deep" in answer["error"], answer
    if what:
        assert what in answer["error"], answer


def staging_folders(hostile: Hostile) -> set[str]:
    folder = hostile.relay.data_dir / "staging"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_the_parser_refuses_deep_json_in_words() -> None:
    for text in (DEEP, DEEP_OBJECT, RATHER_DEEP):
        with pytest.raises(ValueError, match="nested too deep"):
            loads_limited(text, "options")
        with pytest.raises(ValueError, match="nested too deep"):
            parse_options_field(text)
    boundary = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
        "type": "MultiPolygon", "coordinates": [[[[13.4, 52.47], [13.41, 52.47], [13.4, 52.48], [13.4, 52.47]]]]}}]}
    assert parse_options_field(json.dumps([{"name": "boundary", "value": boundary}]))["boundary"] == boundary


@pytest.mark.parametrize("text", [DEEP, DEEP_OBJECT, RATHER_DEEP], ids=["list", "object", "past-the-limit"])
def test_deep_options_at_init_and_task_new(hostile: Hostile, sample_images: list[Path], text: str) -> None:
    before = staging_folders(hostile)
    answer = init_task(hostile.relay, {"options": text}, token=CLIENT_TOKEN)
    if text.startswith("{"):  # options as an object are refused before they are parsed
        assert answer == {"error": 'Invalid options: expected a JSON list of {"name": ..., "value": ...} objects'}
    else:
        assert_refused(answer, "options")
    assert_refused(init_task(hostile.relay, {"options": deep_options(text)}, token=CLIENT_TOKEN), "options")
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sample_images[:2]]
    answer = post_json(hostile.relay, "/task/new", files=[*form_data({"options": deep_options(text)}).items(),
                                                         *files], token=CLIENT_TOKEN)
    assert_refused(answer, "options")
    assert staging_folders(hostile) == before


def test_a_deep_value_of_a_json_option(hostile: Hostile) -> None:
    """`boundary` takes JSON: its value, given as a string, is parsed to check it."""
    for value in (DEEP, RATHER_DEEP):
        options = json.dumps([{"name": "boundary", "value": value}])
        answer = init_task(hostile.relay, {"options": options}, token=CLIENT_TOKEN)
        assert set(answer) == {"error"} and "boundary" in answer["error"] and "nested" in answer["error"], answer


def test_deep_outputs(hostile: Hostile) -> None:
    for text in (DEEP, RATHER_DEEP):
        assert_refused(init_task(hostile.relay, {"outputs": text}, token=CLIENT_TOKEN), "outputs")


def test_deep_json_command_bodies(hostile: Hostile, sample_images: list[Path]) -> None:
    uuid = submit(hostile.relay, sample_images[:2], token=CLIENT_TOKEN)
    wait_status(hostile.relay, uuid, [COMPLETED], token=CLIENT_TOKEN)
    for path in ("/task/cancel", "/task/remove", "/task/restart"):
        for body in (DEEP, DEEP_OBJECT, json.dumps({"uuid": uuid})[:-1] + ', "x": ' + DEEP + "}"):
            response = requests.post(hostile.relay.api(path), data=body, timeout=60,
                                     headers={"Content-Type": "application/json"})
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            assert "error" in response.json(), (path, response.text[:300])
    # restart with deep options, url-encoded and JSON
    for send in ({"data": {"uuid": uuid, "options": DEEP}}, {"json": {"uuid": uuid, "options": DEEP}},
                 {"json": {"uuid": uuid, "options": json.loads(RATHER_DEEP)}}):
        response = requests.post(hostile.relay.api("/task/restart"), timeout=60, **send)
        assert response.status_code == 200, response.text[:300]
        assert_refused(response.json())
    assert wait_status(hostile.relay, uuid, token=CLIENT_TOKEN)["status"]["code"] == COMPLETED  # left as it was


def test_deep_json_login_body(hostile: Hostile) -> None:
    response = requests.post(f"{hostile.relay.url}/auth/login", data=DEEP_OBJECT, timeout=60,
                             headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 400, 403), response.text[:300]
    assert "error" in response.json()
    assert requests.get(with_token(f"{hostile.relay.url}/info"), timeout=10).status_code == 200
