"""The protocol library's client against real development nodes, method by method."""
from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import pytest
import requests

from shared import (
    Node,
    NodeConnectionError,
    NodeResponseError,
    OptionsError,
    RangeNotAvailableError,
    TaskFailedError,
    TaskStatus,
)
from shared.client import _Download
from testkit.servers import free_port

pytestmark = pytest.mark.slow

FAST = {"seconds_per_image": 0.02}


@pytest.fixture
def node(devnode_factory):
    return Node.from_url(devnode_factory(**FAST).url, timeout=10)


def test_from_url_keeps_scheme_port_prefix_and_token():
    n = Node.from_url("https://relay.example.org:8443/odx/?token=abc")
    assert (n.scheme, n.host, n.port, n.token, n.base_path) == ("https", "relay.example.org", 8443, "abc", "/odx")
    assert n.url("/info") == "https://relay.example.org:8443/odx/info?token=abc"
    assert Node.from_url("https://h").url("/info") == "https://h/info"
    assert Node("h", 3000).url("/x", {"a": 1}) == "http://h:3000/x?a=1"
    with pytest.raises(ValueError):
        Node.from_url("ftp://h")


def test_info_and_options(node):
    info = node.info()
    assert info.engine == "odx" and info.max_parallel_tasks == 1 and info.available_memory > 0
    names = {o.name for o in node.options()}
    assert {"dsm", "pc-quality", "orthophoto-resolution"} <= names
    assert node.version_greater_or_equal_than("1.4.0")


def test_full_task_cycle_with_progress(node, sample_images, tmp_path):
    uploads, statuses = [], []
    task = node.create_task(sample_images, {"dsm": True, "orthophoto-resolution": 5}, name="cycle",
                            progress_callback=uploads.append, parallel_uploads=3)
    assert uploads and uploads[-1] == 100.0 and uploads == sorted(uploads)
    first = task.info(with_output=0)
    assert first.uuid == task.uuid and first.images_count == len(sample_images) and first.name == "cycle"
    final = task.wait_for_completion(status_callback=statuses.append, interval=0.1)
    assert final.status == TaskStatus.COMPLETED and final.progress == 100
    assert statuses[-1].status == TaskStatus.COMPLETED
    lines = task.output()
    assert len(lines) > 3 and task.output(2) == lines[2:]
    assert task.uuid in node.list_tasks()
    downloads: list[float] = []
    zip_path = task.download_zip(tmp_path / "zip", progress_callback=downloads.append)
    assert zipfile.ZipFile(zip_path).getinfo("odm_orthophoto/odm_orthophoto.tif").file_size > 0
    assert downloads and downloads[-1] == pytest.approx(100.0)
    extracted = task.download_assets(tmp_path / "all")
    assert (Path(extracted) / "odm_dem" / "dsm.tif").is_file()
    assert not list(Path(extracted).glob("*.zip"))


def test_download_asset_falls_back_to_all_zip_on_a_plain_node(node, sample_images, tmp_path):
    task = node.create_task(sample_images[:3])
    task.wait_for_completion(interval=0.1)
    ortho = Path(task.download_asset("orthophoto.tif", tmp_path))
    assert ortho.name == "orthophoto.tif" and ortho.read_bytes()[:2] in (b"II", b"MM")
    with pytest.raises(NodeResponseError, match="unknown asset"):
        task.download_asset("../../etc/passwd", tmp_path)


def test_parallel_range_download_when_offered(devnode_factory, sample_images, tmp_path):
    ranged = Node.from_url(devnode_factory(range=True, **FAST).url)
    task = ranged.create_task(sample_images[:3])
    task.wait_for_completion(interval=0.1)
    seen: list[str] = []
    original = ranged.session.request

    def spy(method, url, **kwargs):
        seen.append((kwargs.get("headers") or {}).get("Range", ""))
        return original(method, url, **kwargs)

    ranged.session.request = spy
    path = task.download_zip(tmp_path / "r", parallel_downloads=4, parallel_chunks_size=0.05)
    assert sum(1 for r in seen if r.startswith("bytes=")) > 3, "expected several ranged requests"
    plain = requests.get(ranged.url(f"/task/{task.uuid}/download/all.zip")).content
    assert Path(path).read_bytes() == plain


def test_single_stream_when_ranges_are_ignored(node, sample_images, tmp_path):
    task = node.create_task(sample_images[:3])
    task.wait_for_completion(interval=0.1)
    seen: list[str] = []
    original = node.session.request

    def request(method, url, **kwargs):
        seen.append((kwargs.get("headers") or {}).get("Range", ""))
        return original(method, url, **kwargs)

    node.session.request = request
    path = task.download_zip(tmp_path, parallel_chunks_size=0.05)
    assert not any(seen), "NodeODX ignores Range: the client must not ask"
    assert zipfile.ZipFile(path).testzip() is None


def test_range_refused_part_way_is_reported(node, sample_images, tmp_path):
    task = node.create_task(sample_images[:2])
    task.wait_for_completion(interval=0.1)
    download = _Download(task, "all.zip", tmp_path / "x.zip", None, 2, 64 * 1024, 0)
    with pytest.raises(RangeNotAvailableError):
        download._parallel(tmp_path / "x.part", 200_000)


def test_uploads_are_retried_when_the_node_drops_them(devnode_factory, sample_images):
    flaky = Node.from_url(devnode_factory(drop_uploads=0.5, **FAST).url)
    task = flaky.create_task(sample_images, max_retries=20, retry_timeout=0.01)
    assert task.info().images_count == len(sample_images)


def test_upload_gives_up_after_max_retries(devnode_factory, sample_images):
    dead = Node.from_url(devnode_factory(drop_uploads=1.0, **FAST).url)
    with pytest.raises(Exception, match="500"):
        dead.create_task(sample_images[:2], max_retries=1, retry_timeout=0.01)


def test_cancel_restart_remove(devnode_factory, sample_images):
    slow = Node.from_url(devnode_factory(seconds_per_image=2).url)
    task = slow.create_task(sample_images[:2])
    assert task.cancel()
    with pytest.raises(TaskFailedError, match="canceled"):
        task.wait_for_completion(interval=0.1)
    assert task.restart({"dsm": True})
    assert task.info().status in (TaskStatus.QUEUED, TaskStatus.RUNNING)
    assert task.remove()
    with pytest.raises(NodeResponseError, match="not found"):
        task.info()


def test_failed_task_raises_with_the_node_message(devnode_factory, sample_images):
    failing = Node.from_url(devnode_factory(fail_tasks=True, **FAST).url)
    task = failing.create_task(sample_images[:2])
    with pytest.raises(TaskFailedError) as caught:
        task.wait_for_completion(interval=0.1)
    assert caught.value.status == TaskStatus.FAILED and "failed" in str(caught.value)


def test_set_uuid_and_webhook_fields(node, sample_images):
    wanted = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
    task = node.create_task(sample_images[:2], task_uuid=wanted, skip_post_processing=True)
    assert task.uuid == wanted
    with pytest.raises(NodeResponseError, match="Invalid set-uuid"):
        node.create_task(sample_images[:2], task_uuid=wanted)


@pytest.mark.parametrize("options, files, words", [
    ({"pc-quality": "extreme"}, 3, "pc-quality"),
    ({"mesh-octree-depth": 20}, 3, "between 1 and 14"),
    ({"no-such-option": 1}, 3, "unknown option"),
    ({}, 1, "at least 2"),
])
def test_validation_errors_before_upload(node, sample_images, options, files, words):
    with pytest.raises(OptionsError, match=words) as caught:
        node.create_task(sample_images[:files], options)
    assert caught.value.problems
    assert node.list_tasks() == [], "nothing may be uploaded when validation fails"


def test_max_images_checked_before_upload(devnode_factory, sample_images):
    small = Node.from_url(devnode_factory(max_images=2, **FAST).url)
    with pytest.raises(OptionsError, match="at most 2"):
        small.create_task(sample_images[:3])


def test_tokens(devnode_factory, sample_images):
    secured = devnode_factory(token="s3cret", **FAST)
    with pytest.raises(NodeResponseError, match="token"):
        Node.from_url(secured.url).info()
    assert Node.from_url(secured.url + "?token=s3cret").info().engine == "odx"


def test_unreachable_and_missing_files(tmp_path):
    from testkit.servers import free_port
    with pytest.raises(NodeConnectionError, match="cannot reach"):
        Node("127.0.0.1", free_port(), timeout=2).info()
    with pytest.raises(NodeResponseError, match="file not found"):
        Node("127.0.0.1", 1).create_task([tmp_path / "nope.jpg", tmp_path / "nope2.jpg"])


def test_uploads_stream_from_disk(node, tmp_path, sample_images):
    """A 64 MB file goes up without the client reading it into memory whole."""
    import resource
    big = tmp_path / "big.tif"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    done = threading.Event()
    task = node.create_task([big, *sample_images[:2]], validate=False, progress_callback=lambda p: done.set())
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert done.is_set() and task.info().images_count == 3
    assert grown_mb < 40, f"client memory grew by {grown_mb:.0f} MB for a 64 MB upload"


def test_node_closes_its_connections(devnode_factory):
    url = devnode_factory(**FAST).url
    with Node.from_url(url) as node:
        assert node.info().engine == "odx"
        pool = node.session.get_adapter(url).poolmanager
        assert pool.pools
    assert not pool.pools, "leaving the with-block closes the pooled connections"


def test_upload_progress_never_goes_back_even_with_retries(devnode_factory, sample_images):
    flaky = Node.from_url(devnode_factory(drop_uploads=0.5, **FAST).url)
    seen: list[float] = []
    flaky.create_task(sample_images, progress_callback=seen.append, parallel_uploads=4,
                      max_retries=20, retry_timeout=0.01)
    assert seen == sorted(seen) and seen[-1] == 100.0


def test_a_node_out_of_reach_is_named_without_its_token():
    """requests puts the whole URL, query included, into its errors: the client's own error must not carry the
    token on (it reaches logs and QGIS's message log)."""
    port = free_port()  # nothing listens there
    node = Node.from_url(f"http://127.0.0.1:{port}?token=s3cr3t/+tok=en")
    with pytest.raises(NodeConnectionError) as caught:
        node.info()
    text = str(caught.value)
    assert f"127.0.0.1:{port}" in text
    assert "s3cr3t" not in text and "tok%3Den" not in text and "token=***" in text, text
