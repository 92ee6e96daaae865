"""The relay killed (SIGKILL, by itself: proxy/crashpoints.py) in the middle of archiving a completed task's
results, then started again: the archive is finished by the housekeeping sweep, although its claim was taken by
the process that died, and the outputs then outlive their node. Against both backends (disk and S3)."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from testkit.servers import ServerGroup
from tests.relay.relay_helpers import COMPLETED, submit, wait_for, wait_status
from tests.relay.results_helpers import BACKENDS, Backend, assert_served_from_relay
from tests.relay.test_relay_crash_points import Crashing

pytestmark = pytest.mark.slow


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, servers: ServerGroup) -> Backend:
    return Backend(request.param, servers)


def test_killed_mid_archive_the_archive_is_finished_after_the_restart(
        servers: ServerGroup, fast_node, sample_images: list[Path], backend: Backend,
        monkeypatch: pytest.MonkeyPatch) -> None:
    node = fast_node()
    flags = backend.flags()
    for name, value in flags.pop("env", {}).items():  # (the relay inherits the test's environment)
        monkeypatch.setenv(name, value)
    crashing = Crashing(servers, [node], "mid-archive", **flags)
    uuid = submit(crashing.relay, sample_images[:3])
    crashing.died()  # with the node's zip copied to its disk, not yet in the store
    assert backend.zip_bytes(crashing.relay, uuid) is None
    relay = crashing.again()
    assert wait_status(relay, uuid)["status"]["code"] == COMPLETED
    wait_for(lambda: f"results archived uuid={uuid}" in relay.log(), timeout=30, what="the archive finished")
    assert f"archive of {uuid} was left unfinished" in relay.log()
    whole = requests.get(node.api(f"/task/{uuid}/download/all.zip"), timeout=30).content
    assert backend.zip_bytes(relay, uuid) == whole
    wait_for(lambda: backend.held(relay, uuid) == [f"{uuid}/all.zip", f"{uuid}/output.json",
                                                   f"{uuid}/thumbnail.png"], timeout=20,
             what="the thumbnail beside the zip, no pending marker left")
    node.stop()
    assert_served_from_relay(relay, uuid, whole)
