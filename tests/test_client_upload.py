"""How the client sends a file: one multipart body per file, streamed in blocks (`shared.multipart.FilePart`).

The body must be byte for byte what requests-toolbelt's encoder made before (which NodeODX, the relay and
the development node all read), its progress must count the file's bytes exactly, once each, and its
memory must be one block per upload in flight, whatever the file's size. The other way, a folder asset
taken out of all.zip is copied member by member in the same blocks.
"""
from __future__ import annotations

import hashlib
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from requests_toolbelt.multipart.encoder import MultipartEncoder

from shared import Node
from shared.multipart import BLOCK, FilePart

NAMES = ["IMG_0001.JPG", 'odd "quoted" name.jpg', "ünïcode ø.tif"]


def write(path: Path, size: int) -> Path:
    path.write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
    return path


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 17])
def test_body_is_what_the_toolbelt_encoder_sends(tmp_path, name, size):
    path = write(tmp_path / name, size)
    ours = FilePart("images", path, "image/jpeg", boundary="b0undary")
    with open(path, "rb") as handle:
        theirs = MultipartEncoder(fields={"images": (path.name, handle, "image/jpeg")}, boundary="b0undary")
        expected = theirs.to_string()
    body = b"".join(bytes(block) for block in ours)
    assert body == expected and len(ours) == len(expected)
    assert ours.content_type == "multipart/form-data; boundary=b0undary"


def test_blocks_progress_and_a_second_pass(tmp_path):
    path = write(tmp_path / "a.jpg", 5 * 65536 + 3)
    sent: list[int] = []
    body = FilePart("images", path, "image/jpeg", block=65536, on_sent=sent.append)
    blocks = [len(b) for b in body]
    assert max(blocks[1:-1]) == 65536 and sent == [65536] * 5 + [3]
    sent.clear()
    assert [len(b) for b in body] == blocks and sum(sent) == path.stat().st_size, "a retry reads the file again"


def test_a_file_that_shrinks_while_sent_is_an_error(tmp_path):
    path = write(tmp_path / "a.jpg", 4 * 65536)
    body = iter(FilePart("images", path, "image/jpeg", block=65536))
    next(body), next(body)
    path.write_bytes(b"x")
    with pytest.raises(OSError, match="shrank"):
        list(body)


@pytest.mark.slow
def test_upload_progress_counts_every_byte_once(devnode_factory, tmp_path):
    """One upload at a time: every block sent is one report, at exactly the bytes sent so far."""
    node = devnode_factory(seconds_per_image=5)
    files = [write(tmp_path / f"IMG_{i}.JPG", size) for i, size in enumerate((3 * BLOCK + 5, 1, BLOCK))]
    total = sum(f.stat().st_size for f in files)
    expected, done = [], 0
    for f in files:
        size = f.stat().st_size
        for offset in range(0, size, BLOCK):
            done += min(BLOCK, size - offset)
            expected.append(100.0 * done / total)
    seen: list[float] = []
    task = Node.from_url(node.url).create_task(files, validate=False, progress_callback=seen.append,
                                               parallel_uploads=1)
    assert seen == pytest.approx(expected) and seen[-1] == 100.0
    received = node.data_dir / task.uuid / "images"
    for f in files:
        assert hashlib.sha256((received / f.name).read_bytes()).digest() == hashlib.sha256(f.read_bytes()).digest()


@pytest.mark.slow
def test_upload_memory_is_a_block_per_upload_not_the_file(devnode_factory, tmp_path):
    """Python allocations while 4 files of 16 MB go up 4 at a time: a few blocks, not a file."""
    node = Node.from_url(devnode_factory(seconds_per_image=5).url)
    files = [write(tmp_path / f"IMG_{i}.JPG", 16 * 1024 * 1024) for i in range(4)]
    tracemalloc.start()
    try:
        node.create_task(files, validate=False, parallel_uploads=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * BLOCK + 3 * 1024 * 1024, f"{peak / 1024 / 1024:.1f} MB allocated at the peak"


def test_a_folder_asset_is_copied_member_by_member(tmp_path):
    """`download_asset("orthophoto_tiles.zip")` from a plain node: the folder's members, in blocks, the same bytes."""
    from shared.client import _zip_members
    source = tmp_path / "all.zip"
    members = {"orthophoto_tiles/": b"", "orthophoto_tiles/1/0/0.png": bytes(range(256)) * 4000,
               "orthophoto_tiles/1/0/1.png": b"x"}
    with zipfile.ZipFile(source, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with zipfile.ZipFile(source) as archive:
        _zip_members(archive, list(members), tmp_path / "tiles.zip")
    with zipfile.ZipFile(tmp_path / "tiles.zip") as copied:
        assert copied.testzip() is None
        assert {name: copied.read(name) for name in copied.namelist()} == members
