"""`zipurl`: a task's photos as one zip that the relay fetches itself, checked, then staged like an upload.

NodeODX downloads the `zipurl` given to `/task/new` and extracts its files, flat, as the task's inputs.
The relay does the same before it chooses a node, so that the zip's photos are counted, placed and kept
for failover like uploaded ones. A URL is a way to make the relay send requests on a client's behalf, so
it is held short: http(s) only, bounded in size and time, at most a few redirects, and never towards a
loopback, private, link-local or otherwise internal address unless the operator allows it
(`--zipurl-allow-private`): the policy in `outbound.py`, which task webhooks follow too.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import aiohttp
from yarl import URL

from .errors import ZipUrlError
from .models import TaskRecord
from .outbound import Policy, connector
from .staging import safe_filename
from .state import Relay

log = logging.getLogger("odx_relay.zipurl")
MAX_REDIRECTS = 5
CHUNK = 1024 * 1024
MB = 1024 * 1024


ZIPURL = Policy("zipurl", "fetches zip files from", "--zipurl-allow-private", ZipUrlError)


def checked_url(text: str, allow_private: bool) -> URL:
    """The URL if the relay may fetch it; ZipUrlError naming the rule it breaks otherwise."""
    return ZIPURL.checked(text, allow_private)


async def fetch(relay: Relay, text: str, target: Path, limit_bytes: int) -> None:
    """Download the zip to `target`, following at most a few redirects, each checked like the first."""
    config = relay.config
    timeout = aiohttp.ClientTimeout(total=config.zipurl_timeout, sock_connect=30, sock_read=60)
    url = checked_url(text, config.zipurl_allow_private)
    async with aiohttp.ClientSession(connector=connector(config.zipurl_allow_private), timeout=timeout,
                                     auto_decompress=False) as session:
        for _ in range(MAX_REDIRECTS + 1):
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = checked_url(str(url.join(URL(resp.headers["Location"]))), config.zipurl_allow_private)
                    continue
                if resp.status != 200:
                    raise ZipUrlError(f"Cannot download zipurl: the server answered HTTP {resp.status}")
                if (resp.content_length or 0) > limit_bytes:
                    raise ZipUrlError(too_large(limit_bytes))
                await save(resp, target, limit_bytes)
                return
    raise ZipUrlError(f"Cannot download zipurl: more than {MAX_REDIRECTS} redirects")


async def save(resp: aiohttp.ClientResponse, target: Path, limit_bytes: int) -> None:
    written = 0
    with open(target, "wb") as handle:
        async for chunk in resp.content.iter_chunked(CHUNK):
            written += len(chunk)
            if written > limit_bytes:
                raise ZipUrlError(too_large(limit_bytes))
            handle.write(chunk)


def too_large(limit_bytes: int) -> str:
    return f"zipurl too large: this relay takes zip files of at most {limit_bytes / MB:g} MB"


def hidden(path: str) -> bool:
    """macOS resource forks (`__MACOSX/`, `._x`) and dot files: an archiver's leftovers, never photos."""
    parts = path.replace("\\", "/").split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


def extract_flat(archive: Path, folder: Path, limit_bytes: int) -> list[str]:
    """Every file of the zip into `folder` under its cleaned base name (NodeODX extracts flat too), counting
    the bytes really written, so a zip that inflates past the limit is stopped, not trusted."""
    names: list[str] = []
    written = 0
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                if member.is_dir() or hidden(member.filename):
                    continue
                name = safe_filename(member.filename)
                if name is None:
                    continue
                with zipped.open(member) as source, open(folder / name, "wb") as handle:
                    while chunk := source.read(CHUNK):
                        written += len(chunk)
                        if written > limit_bytes:
                            raise ZipUrlError(f"zipurl too large: its files take more than "
                                              f"{limit_bytes / MB:g} MB once extracted")
                        handle.write(chunk)
                names.append(name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise ZipUrlError(f"zipurl is not a usable zip file: {exc}") from None
    return names


async def stage_zipurl(relay: Relay, task: TaskRecord, url: str) -> list[str]:
    """Fetch the task's zipurl into its staging folder and extract it there; the zip itself is not kept."""
    config = relay.config
    limit_mb = min(m for m in (config.zipurl_max_mb, config.max_upload_mb) if m) if (
        config.zipurl_max_mb or config.max_upload_mb) else 0
    limit = int(limit_mb * MB) if limit_mb else 2 ** 62
    folder = relay.staging.folder(task.uuid)
    archive = folder / ".zipurl.zip.part"
    try:
        try:
            await fetch(relay, url, archive, limit)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ZipUrlError(f"Cannot download zipurl: {type(exc).__name__}: {exc}") from None
        names = extract_flat(archive, folder, limit)
    finally:
        archive.unlink(missing_ok=True)
    log.info("zipurl staged uuid=%s files=%d", task.uuid, len(names))
    return names
