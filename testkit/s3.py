"""An S3-compatible server for tests: moto's server mode (`python -m moto.server`) as a subprocess on a free
127.0.0.1 port, a real HTTP endpoint that boto3 (and the relay) talk to as they would to AWS or MinIO."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.servers import ServerProcess, free_port, start_server

ACCESS_KEY = "relay-test-access"
SECRET_KEY = "relay-test-secret-DO-NOT-ECHO"
REGION = "us-east-1"


@dataclass
class S3Server(ServerProcess):
    """A moto S3 server; `env` is what a client needs to reach it (endpoint, credentials, region)."""

    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY,
                                              aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def bucket(self, name: str) -> str:
        """Create a bucket (once); its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))


def start_s3(tmp_path: Path, port: int | None = None) -> S3Server:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(f"s3:{port}", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                          port, tmp_path / f"s3-{port}.log", ready_path="/moto-api/", cls=S3Server, timeout=60)
    assert isinstance(server, S3Server)
    server.env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                  "AWS_DEFAULT_REGION": REGION}
    return server
