"""Two relay replicas on one Redis and one S3 bucket: the task's results are archived once (one replica copies,
the other sees the record), its node's copy is removed (`--remove-from-node`), and both replicas then answer
its info, output and downloads from the bucket, with its node dead."""
from __future__ import annotations

from pathlib import Path

import pytest

from testkit.cluster import start_cluster
from testkit.servers import ServerGroup
from tests.relay.relay_helpers import COMPLETED, get_json, submit, wait_for, wait_status
from tests.relay.results_helpers import BUCKET, PREFIX, Backend, assert_served_from_relay

pytestmark = pytest.mark.slow


def test_replicas_archive_once_and_both_serve_from_the_bucket(
        servers: ServerGroup, sample_images: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend("s3", servers)
    flags = backend.flags()
    for name, value in flags.pop("env").items():  # (the replicas inherit the test's environment)
        monkeypatch.setenv(name, value)
    cluster = start_cluster(servers.tmp_path / "cluster", servers, [{}], 2, True, remove_from_node=True, **flags)
    try:
        first, second = cluster.replicas
        node = cluster.nodes[0]
        uuid = submit(first, sample_images[:3])
        assert wait_status(second, uuid)["status"]["code"] == COMPLETED
        wait_for(lambda: any(f"node copy removed uuid={uuid}" in r.log() for r in (first, second)), timeout=30,
                 what="the results archived and the node's copy removed")
        assert sum(r.log().count(f"results archived uuid={uuid}") for r in (first, second)) == 1
        assert uuid not in [t["uuid"] for t in get_json(node, "/task/list")]
        whole = backend.zip_bytes(first, uuid)
        assert whole is not None
        output = get_json(first, f"/task/{uuid}/output")
        assert any("ODX app finished" in line for line in output)
        node.stop()
        for replica in (first, second):
            assert get_json(replica, f"/task/{uuid}/info")["status"]["code"] == COMPLETED
            assert get_json(replica, f"/task/{uuid}/output") == output
            assert_served_from_relay(replica, uuid, whole)
        wait_for(lambda: backend.held(first, uuid) == [f"{uuid}/all.zip", f"{uuid}/output.json",
                                                       f"{uuid}/thumbnail.png"], timeout=20,
                 what="the thumbnail beside the zip, no pending marker left")
        assert backend.s3 is not None and backend.s3.keys(BUCKET, f"{PREFIX}/pending/") == []
    finally:
        cluster.close()
