"""The download cache (`<data>/cache`) is bounded by `--cache-mb`: past it, the least recently used tasks' files
go first, never files being served or being filled; its size is counted again from disk at start."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.downloads import DownloadCache, serve
from proxy.models import TaskRecord
from tests.relay.relay_helpers import submit, wait_for, wait_status

KB = 1024
MB = 1024 * 1024


def put(cache: DownloadCache, uuid: str, size: int, name: str = "all.zip") -> Path:
    """A file written into the cache as a request does: under that request's lease."""
    path = cache.folder(uuid) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    lease = cache.hold(uuid)
    cache.record(uuid, path)
    lease.release()
    return path


def use(cache: DownloadCache, *uuids: str) -> None:
    for uuid in uuids:
        time.sleep(0.01)  # distinct times of last use
        cache.hold(uuid).release()


def cached(cache: DownloadCache) -> set[str]:
    return {p.name for p in cache.root.iterdir() if not p.name.startswith(".")} if cache.root.is_dir() else set()


def test_least_recently_used_tasks_go_first(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path / "cache", 30 * KB)
    for uuid in "abc":
        put(cache, uuid, 10 * KB)
        use(cache, uuid)
    use(cache, "a")  # a is now more recent than b and c
    put(cache, "d", 10 * KB)
    assert cached(cache) == {"a", "c", "d"} and cache.total == 30 * KB
    put(cache, "a", 5 * KB, "assets/orthophoto.tif")  # products cut out of a task's zip count as its files
    assert cached(cache) == {"a", "d"} and cache.total == 25 * KB
    cache.drop("d")  # a task removed
    assert cached(cache) == {"a"} and cache.total == 15 * KB
    assert DownloadCache(tmp_path / "unbounded").limit == 0


def test_files_being_served_or_filled_stay(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path / "cache", 20 * KB)
    put(cache, "served", 10 * KB)
    put(cache, "filling", 10 * KB)
    use(cache, "served", "filling")
    lease = cache.hold("served")
    cache.fills["filling"] = asyncio.Future(loop=asyncio.new_event_loop())  # a fill under way
    new = cache.hold("new")
    put(cache, "new", 10 * KB)
    assert cached(cache) == {"served", "filling", "new"}  # over the limit while all three are busy
    lease.release()
    assert cached(cache) == {"filling", "new"}  # let go of, and the least recently used: evicted now
    new.release()
    assert cached(cache) == {"filling", "new"}
    cache.fills.pop("filling")
    put(cache, "newer", 10 * KB)
    assert cached(cache) == {"new", "newer"} and cache.total == 20 * KB


def test_a_cache_left_on_disk_is_counted_at_start(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first = DownloadCache(root)
    for uuid in "abc":
        put(first, uuid, 10 * KB)
        os.utime(first.zip_path(uuid), (time.time() - 100 + ord(uuid), time.time() - 100 + ord(uuid)))
    (root / "a" / "all.zip.123.stream").write_bytes(b"x" * KB)  # what a killed relay left half written
    (root / "b" / "all.fill").write_bytes(b"x" * KB)
    (root / ".trash-c-1").mkdir()
    again = DownloadCache(root, 20 * KB)
    assert again.total == 20 * KB and cached(again) == {"b", "c"}  # the oldest went at once
    assert not (root / "b" / "all.fill").exists() and not (root / ".trash-c-1").exists()


def test_a_file_being_sent_to_a_slow_client_is_not_evicted(tmp_path: Path) -> None:
    """The lease lasts until aiohttp has sent the whole file (after the handler returned its response)."""
    cache = DownloadCache(tmp_path / "cache", 40 * MB)
    put(cache, "big", 32 * MB)  # more than the sockets buffer on their way to a client that does not read

    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve(request, None, cache, TaskRecord(uuid="big"), "all.zip")  # type: ignore[arg-type]

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/zip", handler)
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/zip")) as response:
                first = await response.content.read(64 * KB)
                for _ in range(50):
                    await asyncio.sleep(0.02)
                    if cache.users.get("big"):
                        break
                assert cache.users.get("big") == 1  # still being sent
                put(cache, "other", 16 * MB)  # over the limit: "big" is the least recently used, but busy
                assert cache.zip_path("big").exists() and not cache.folder("other").exists()
                rest = await response.read()
                assert len(first) + len(rest) == 32 * MB
            assert cache.zip_path("big").exists() and cache.total == 32 * MB and not cache.users

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_relay_keeps_its_cache_under_cache_mb(relay_factory, fast_node, sample_images: list[Path]) -> None:
    """Completed tasks' zips live in the results store; the cache holds the products cut out of them (a 2-photo
    task's orthophoto: 0.7 MB), and stays under its bound."""
    relay = relay_factory([fast_node(slots=2)], cache_mb=1.5)
    uuids = [submit(relay, sample_images[:2]) for _ in range(4)]
    for uuid in uuids:
        wait_status(relay, uuid)
        wait_for((relay.data_dir / "results" / uuid / "all.zip").is_file, what="the results to be archived")
    root = relay.data_dir / "cache"

    def get(uuid: str, asset: str, **headers: str) -> bytes:
        response = requests.get(relay.api(f"/task/{uuid}/download/{asset}"), headers=headers, timeout=60)
        assert response.status_code in (200, 206), response.text[:300]
        return response.content

    def on_disk() -> tuple[set[str], int]:
        while True:  # a folder may be evicted (renamed to trash) while it is walked: walk again
            try:
                folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
                return folders, sum(p.stat().st_size for f in folders for p in (root / f).rglob("*") if p.is_file())
            except FileNotFoundError:
                continue

    first = get(uuids[0], "orthophoto.tif")
    get(uuids[1], "orthophoto.tif")
    assert get(uuids[0], "orthophoto.tif", Range="bytes=0-9") == first[:10]  # uuids[1] is now the least recent
    get(uuids[2], "orthophoto.tif")
    wait_for(lambda: on_disk()[0] == {uuids[0], uuids[2]}, what="the cache to hold the 1st and 3rd task")
    assert on_disk()[1] <= 1.5 * MB
    get(uuids[3], "orthophoto.tif")
    wait_for(lambda: on_disk()[0] == {uuids[2], uuids[3]}, what=f"the cache to hold {uuids[2]} and {uuids[3]}")
    assert on_disk()[1] <= 1.5 * MB
    assert get(uuids[0], "orthophoto.tif") == first  # an evicted product is cut again
    assert "cache evicted uuid=" in relay.log()
    wait_for(lambda: on_disk()[1] <= 1.5 * MB, what="the cache to shrink")
