"""Helpers for the results store's tests: the backend a relay keeps its results in (a folder, or a bucket on
moto's S3 server started for the test), and what a client must still get once the node is gone."""
from __future__ import annotations

import zipfile
from io import BytesIO
from typing import Any

import requests

from testkit.relay import Relay
from testkit.s3 import S3Server, start_s3
from testkit.servers import ServerGroup
from tests.relay.relay_helpers import wait_for

BACKENDS = ["disk", "s3"]
BUCKET, PREFIX = "relay-results", "odx"


class Backend:
    """Where the relay under test keeps its results, and how the test looks there."""

    def __init__(self, kind: str, servers: ServerGroup):
        self.kind = kind
        self.s3: S3Server | None = None
        if kind == "s3":
            self.s3 = servers.add(start_s3(servers.tmp_path))
            self.s3.bucket(BUCKET)

    def flags(self) -> dict[str, Any]:
        if self.s3 is None:
            return {}
        return {"results_s3": f"s3://{BUCKET}/{PREFIX}", "env": self.s3.env}

    def zip_bytes(self, relay: Relay, uuid: str) -> bytes | None:
        return self.file_bytes(relay, uuid, "all.zip")

    def file_bytes(self, relay: Relay, uuid: str, name: str) -> bytes | None:
        """One of the task's files in the store (all.zip, output.json, thumbnail.png); None if it is not there."""
        if self.s3 is None:
            path = relay.data_dir / "results" / uuid / name
            return path.read_bytes() if path.is_file() else None
        try:
            return self.s3.client().get_object(Bucket=BUCKET, Key=f"{PREFIX}/{uuid}/{name}")["Body"].read()
        except Exception:  # noqa: BLE001  (not there)
            return None

    def put(self, relay: Relay, uuid: str, name: str, data: bytes) -> None:
        if self.s3 is None:
            (relay.data_dir / "results" / uuid / name).write_bytes(data)
        else:
            self.s3.client().put_object(Bucket=BUCKET, Key=f"{PREFIX}/{uuid}/{name}", Body=data)

    def delete(self, relay: Relay, uuid: str, name: str) -> None:
        if self.s3 is None:
            (relay.data_dir / "results" / uuid / name).unlink()
        else:
            self.s3.client().delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{uuid}/{name}")

    def held(self, relay: Relay, uuid: str) -> list[str]:
        """What the store holds of the task (and its pending marker, if any)."""
        if self.s3 is None:
            root = relay.data_dir / "results"
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and uuid in str(p))
        return [k.removeprefix(PREFIX + "/") for k in self.s3.keys(BUCKET, PREFIX) if uuid in k]


def archived(relay: Relay, uuid: str, timeout: float = 30) -> None:
    wait_for(lambda: f"results archived uuid={uuid}" in relay.log(), timeout=timeout, what="the results archived")


def assert_served_from_relay(relay: Relay, uuid: str, whole: bytes) -> None:
    """all.zip, two kinds of Range, the orthophoto and the DSM, all from the relay with no node behind it."""
    assert requests.get(relay.api(f"/task/{uuid}/download/all.zip"), timeout=30).content == whole
    ranged = requests.get(relay.api(f"/task/{uuid}/download/all.zip"), headers={"Range": "bytes=10-19"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == whole[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(whole)}"
    tail = requests.get(relay.api(f"/task/{uuid}/download/all.zip"), headers={"Range": "bytes=-7"}, timeout=30)
    assert tail.status_code == 206 and tail.content == whole[-7:]
    past = requests.get(relay.api(f"/task/{uuid}/download/all.zip"), headers={"Range": f"bytes={len(whole)}-"},
                        timeout=30)
    assert past.status_code == 416
    with zipfile.ZipFile(BytesIO(whole)) as archive:
        orthophoto = archive.read("odm_orthophoto/odm_orthophoto.tif")
        dsm = archive.read("odm_dem/dsm.tif")
    assert requests.get(relay.api(f"/task/{uuid}/download/orthophoto.tif"), timeout=30).content == orthophoto
    assert requests.get(relay.api(f"/task/{uuid}/download/dsm.tif"), timeout=30).content == dsm


