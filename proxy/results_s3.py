"""The results store in S3-compatible object storage (`--results-s3 s3://bucket/prefix`), with boto3.

Endpoint and credentials come from the usual environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, or any other source boto3 reads). Keys: `<prefix>/<uuid>/all.zip`,
`<prefix>/<uuid>/output.json`, `<prefix>/<uuid>/thumbnail.png`, `<prefix>/pending/<uuid>`.

boto3 blocks, so every call runs in a thread (`asyncio.to_thread`), never on the event loop. Uploads go from the
local file the node's zip was streamed to, in parts of PART bytes, at most PARTS at once: memory stays bounded
whatever the size of the zip. Downloads stream the object in chunks (a Range asked of the relay is asked of
the store). Errors name the bucket and key and what the store said, never a credential.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.assets import ALL_ZIP

from .config import parse_s3_url
from .results import OUTPUT, PENDING, THUMBNAIL, ResultsError

PART = 8 * 1024 * 1024
PARTS = 2
CHUNK = 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=PARTS,
                          io_chunksize=256 * 1024)
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def scrubbed(text: str) -> str:
    """`text` with any credential from the environment taken out (a store may echo what it was sent), and any
    password in a URL (an endpoint given as http://user:password@host)."""
    text = re.sub(r"//[^@/\s]*@", "//***@", text)
    for name in SECRET_VARIABLES:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


class S3Results:
    def __init__(self, url: str, spool_dir: Path):
        self.bucket, self.prefix = parse_s3_url(url)
        self.where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.spool_dir = Path(spool_dir)
        self.local = False
        self.busy: set[str] = set()
        self.expired_at = float("-inf")
        self.client = boto3.session.Session().client(
            "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60))

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    async def call(self, what: str, key: str, method: str, **kwargs: Any) -> Any:
        """One boto3 call in a thread; its failure as a ResultsError naming bucket, key and the store's word."""
        return await self.run(what, key, getattr(self.client, method), **kwargs)

    async def run(self, what: str, key: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            said = f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
            raise ResultsError(scrubbed(f"results store: cannot {what} s3://{self.bucket}/{key} ({said})")) from None
        except (BotoCoreError, Boto3Error) as exc:
            raise ResultsError(scrubbed(f"results store: cannot {what} s3://{self.bucket}/{key} "
                                        f"({type(exc).__name__}: {exc})")) from None

    async def check(self) -> None:
        """The bucket is there and these credentials may use it; a spool folder for uploads, emptied of what a
        killed relay left."""
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        await self.call("reach the bucket", "", "head_bucket", Bucket=self.bucket)

    def spool(self, uuid: str) -> Path:
        return self.spool_dir / f"{uuid}.{time.monotonic_ns()}.zip"

    def local_zip(self, uuid: str) -> Path | None:
        return None

    async def put_zip(self, uuid: str, local: Path) -> None:
        key = self.key(uuid, ALL_ZIP)
        try:
            await self.run("upload", key, self.client.upload_file, str(local), self.bucket, key,
                           ExtraArgs={"ContentType": "application/zip"}, Config=TRANSFER)
        finally:
            local.unlink(missing_ok=True)

    async def size(self, uuid: str) -> int:
        key = self.key(uuid, ALL_ZIP)
        head = await self.call("find", key, "head_object", Bucket=self.bucket, Key=key)
        return int(head["ContentLength"])

    async def read(self, uuid: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` (exclusive) of the task's all.zip, a chunk at a time."""
        key = self.key(uuid, ALL_ZIP)
        got = await self.call("read", key, "get_object", Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        body = got["Body"]
        try:
            while True:
                chunk = await self.run("read", key, body.read, CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def fetch(self, uuid: str, target: Path) -> None:
        key = self.key(uuid, ALL_ZIP)
        await self.run("download", key, self.client.download_file, self.bucket, key, str(target), Config=TRANSFER)

    async def put_output(self, uuid: str, lines: list[str]) -> None:
        key = self.key(uuid, OUTPUT)
        await self.call("write", key, "put_object", Bucket=self.bucket, Key=key, Body=json.dumps(lines).encode(),
                        ContentType="application/json")

    async def output(self, uuid: str) -> list[str]:
        key = self.key(uuid, OUTPUT)
        try:
            got = await self.call("read", key, "get_object", Bucket=self.bucket, Key=key)
            return json.loads(await self.run("read", key, got["Body"].read))
        except (ResultsError, ValueError):
            return []

    async def put_thumbnail(self, uuid: str, png: bytes) -> None:
        key = self.key(uuid, THUMBNAIL)
        await self.call("write", key, "put_object", Bucket=self.bucket, Key=key, Body=png, ContentType="image/png")

    async def thumbnail(self, uuid: str) -> bytes | None:
        """The task's thumbnail; None if the bucket has none (a ResultsError if it cannot be asked)."""
        key = self.key(uuid, THUMBNAIL)

        def get() -> bytes | None:
            try:
                got = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            return got["Body"].read()
        return await self.run("read", key, get)

    async def remove(self, uuid: str) -> None:
        folder = self.key(uuid) + "/"
        listed = await self.call("list", folder, "list_objects_v2", Bucket=self.bucket, Prefix=folder)
        keys = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
        if keys:
            await self.call("delete", folder, "delete_objects", Bucket=self.bucket, Delete={"Objects": keys})
        await self.clear_pending(uuid)

    async def mark_pending(self, uuid: str) -> None:
        key = self.key(PENDING, uuid)
        await self.call("write", key, "put_object", Bucket=self.bucket, Key=key, Body=b"")

    async def clear_pending(self, uuid: str) -> None:
        key = self.key(PENDING, uuid)
        await self.call("delete", key, "delete_object", Bucket=self.bucket, Key=key)

    async def pending(self) -> dict[str, float]:
        folder = self.key(PENDING) + "/"
        now, found = time.time(), {}
        for item in await self._list(folder):
            found[item["Key"][len(folder):]] = now - item["LastModified"].timestamp()
        return found

    async def uuids(self) -> list[str]:
        folder = self.key() + "/" if self.prefix else ""
        pages = await self.run("list", folder, lambda: list(self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/")))
        names = [p["Prefix"][len(folder):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
        return [name for name in names if name != PENDING]

    async def _list(self, folder: str) -> list[dict[str, Any]]:
        pages = await self.run("list", folder, lambda: list(self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder)))
        return [item for page in pages for item in page.get("Contents", [])]
