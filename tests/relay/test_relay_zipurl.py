"""`zipurl` on `/task/new`: the relay fetches the zip itself, within limits, and never from an internal
address unless the operator allows it; the zip's photos are then staged, counted and sent like uploads."""
from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from proxy.outbound import internal
from proxy.zipurl import ZipUrlError, checked_url, extract_flat
from tests.relay.relay_helpers import COMPLETED, get_json, task_info, wait_status


@pytest.fixture
def zip_server(tmp_path: Path, sample_images: list[Path]) -> Iterator[str]:
    """A static file server on 127.0.0.1 with `photos.zip` (4 photos, in folders) and `big.zip` (~3 MB)."""
    root = tmp_path / "www"
    root.mkdir()
    with zipfile.ZipFile(root / "photos.zip", "w") as zipped:
        for index, photo in enumerate(sample_images[:4]):
            zipped.write(photo, f"flight/DCIM/{index}_{photo.name}")
        zipped.writestr("__MACOSX/._junk", b"junk")
    with zipfile.ZipFile(root / "big.zip", "w", compression=zipfile.ZIP_STORED) as zipped:
        zipped.writestr("a.jpg", b"\0" * (3 * 1024 * 1024))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    server.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def new_task(relay, **fields: str) -> dict:
    response = requests.post(relay.api("/task/new"), files={k: (None, v) for k, v in fields.items()}, timeout=60)
    return response.json()


def test_zipurl_to_an_internal_address_is_refused_by_default(relay_factory, fast_node, zip_server: str) -> None:
    relay = relay_factory([fast_node()])
    answer = new_task(relay, zipurl=f"{zip_server}/photos.zip", name="nope")
    assert "internal address" in answer["error"] and "--zipurl-allow-private" in answer["error"]
    assert get_json(relay, "/task/list") == []
    assert not any((relay.data_dir / "staging").iterdir())


def test_zipurl_is_fetched_extracted_and_processed(relay_factory, fast_node, zip_server: str) -> None:
    node = fast_node()
    relay = relay_factory([node], zipurl_allow_private=True)
    answer = new_task(relay, zipurl=f"{zip_server}/photos.zip", name="from a zip")
    assert "uuid" in answer, answer
    info = wait_status(relay, answer["uuid"], [COMPLETED])
    assert info["imagesCount"] == 4 and info["name"] == "from a zip"
    assert task_info(node, answer["uuid"])["imagesCount"] == 4  # flat photos on the node, no zip, no junk


def test_zipurl_past_the_size_limit_is_refused_and_leaves_nothing(relay_factory, fast_node, zip_server: str) -> None:
    relay = relay_factory([fast_node()], zipurl_allow_private=True, zipurl_max_mb=1)
    answer = new_task(relay, zipurl=f"{zip_server}/big.zip")
    assert answer["error"].startswith("zipurl too large")
    answer = new_task(relay, zipurl=f"{zip_server}/missing.zip")
    assert answer == {"error": "Cannot download zipurl: the server answered HTTP 404"}
    assert get_json(relay, "/task/list") == []
    assert not any((relay.data_dir / "staging").iterdir())


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1", "100.64.0.1"])
def test_internal_addresses(address: str) -> None:
    assert internal(address)


def test_public_addresses_and_url_rules() -> None:
    assert not internal("8.8.8.8") and not internal("2001:4860:4860::8888")
    assert checked_url("https://example.org/a.zip", False).host == "example.org"
    for bad in ("ftp://example.org/a.zip", "file:///etc/passwd", "http:///nohost", "http://localhost:80/a.zip",
                "http://[::1]/a.zip", "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(ZipUrlError):
            checked_url(bad, False)
    assert checked_url("http://127.0.0.1:9/a.zip", True).port == 9  # the operator allowed it


def test_extraction_stops_a_zip_that_inflates_past_the_limit(tmp_path: Path) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("x.jpg", b"\0" * (4 * 1024 * 1024))  # a few KB compressed
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(bomb.getvalue())
    with pytest.raises(ZipUrlError, match="once extracted"):
        extract_flat(archive, tmp_path, 1024 * 1024)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ZipUrlError, match="not a usable zip"):
        extract_flat(tmp_path / "bad.zip", tmp_path, 1024)
