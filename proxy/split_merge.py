"""Split-merge through the relay: a task with `split` gets `sm-cluster` pointing back at the relay, so that
ODM on the parent's node sends its submodels here (pyodx, as ODM's `LocalRemoteExecutor` does) and the
relay spreads them over the cluster like any task.

The URL carries a credential scoped to the parent task (`sm.<parent uuid>.<signature>`): it needs no store
entry of its own (the relay's shared secret signs it, so every replica knows it) and it works only while the
parent is unfinished, so it dies when the parent ends (completed, failed, canceled, removed). A task created
with it is a *submodel*: its owner is the parent's owner with the parent's uuid added (`child_owner`), so the
credential sees only that parent's submodels, the owner's own `/task/list` does not fill with them, and the
store's per-owner index is the parent's list of submodels (in SQLite and Redis alike, nothing new to keep in
step). The parent's owner reaches them too (`owns`).

Placement (`proxy/dispatch.py`, `proxy/intake.py`): submodels go ahead of every other queued task and are
placed at commit when any node has room (ODM takes a submodel answered QUEUED for "task limit reached" and
processes it on the parent's node instead); a parent is not given the cluster's last free slot while another
parent runs (`slots_to_keep`), so parents never take every slot their submodels need.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Any

from .errors import BadRequest
from .models import Stage, TaskRecord
from .signed_urls import signature
from .staging import valid_uuid
from .store import open_on

if TYPE_CHECKING:  # state imports auth, which imports this module
    from .state import Relay

log = logging.getLogger("odx_relay.split_merge")

SM_CLUSTER = "sm-cluster"
SPLIT = "split"
SEED = "seed.zip"
CREDENTIAL_PREFIX = "sm."
CHILD_MARK = "|sm:"  # between the parent's owner and its uuid; no owner id contains it ("token:<hex>", "user:<name>")
#: Stages in which a parent's credential works: committed and not ended in the relay.
ALIVE_STAGES = (Stage.QUEUED, Stage.DISPATCHING, Stage.COMMITTING, Stage.ON_NODE)
SUBMODELS_KEY = "relaySubmodels"


# --- the credential -------------------------------------------------------------------------------
def credential(secret: bytes, parent_uuid: str) -> str:
    return f"{CREDENTIAL_PREFIX}{parent_uuid}.{_signature(secret, parent_uuid)}"


def _signature(secret: bytes, parent_uuid: str) -> str:
    return signature(secret, "submodels", parent_uuid)  # the relay's one signing helper


def is_credential(token: str) -> bool:
    return token.startswith(CREDENTIAL_PREFIX)


def credential_parent(secret: bytes, token: str) -> str | None:
    """The parent uuid a split-merge credential was made for, or None if it is not one of this relay's."""
    parent, _, given = token.removeprefix(CREDENTIAL_PREFIX).partition(".")
    if not valid_uuid(parent) or not hmac.compare_digest(given.encode(), _signature(secret, parent).encode()):
        return None
    return parent


def alive(parent: TaskRecord | None) -> bool:
    """Whether a parent's credential still works: the parent is committed and has not ended."""
    return parent is not None and parent.stage in ALIVE_STAGES and parent.ended_ms is None


def child_owner(owner: str, parent_uuid: str) -> str:
    """The owner id under which a parent's submodels are kept."""
    return f"{owner}{CHILD_MARK}{parent_uuid}"


def parent_of_owner(owner: str) -> str | None:
    """The parent uuid of a submodel's owner id (what a split-merge credential identifies as), or None."""
    return owner.rpartition(CHILD_MARK)[2] if CHILD_MARK in owner else None


def owns(owner: str, task: TaskRecord) -> bool:
    """Whether `owner` may act on `task`: its own, or a submodel of one of its own tasks."""
    return task.owner == owner or (task.parent_uuid is not None and task.owner == child_owner(owner, task.parent_uuid))


# --- options and inputs ---------------------------------------------------------------------------
def split_size(options: dict[str, Any]) -> int:
    """The `split` option as a whole number of images per submodel (0: no split asked)."""
    value = options.get(SPLIT)
    try:
        size = int(float(value)) if value not in (None, "", False, True) else 0
    except (TypeError, ValueError):
        return 0
    return max(size, 0)


def is_parent(task: TaskRecord) -> bool:
    """A task that will split into submodels: `split` below its image count (once known), and not itself a
    submodel (ODM leaves `split` out of a submodel's options; a client that puts it back gets no cluster)."""
    size = split_size(task.options)
    return (task.parent_uuid is None and size > 0
            and (task.image_count == 0 or size < task.image_count))


def cluster_url(relay: Relay, parent_uuid: str) -> str:
    """The `sm-cluster` value for a parent: the relay's public URL with the parent's credential (pyodx's
    `Node.from_url` form, `proto://host:port/?token=...`)."""
    return f"{relay.config.callback_base}/?token={credential(relay.secret, parent_uuid)}"


def rewrite_options(relay: Relay, task: TaskRecord, options: dict[str, Any]) -> dict[str, Any]:
    """A task's options as the relay sends them: `sm-cluster` is never the client's (a node must not be
    pointed at an address of a client's choosing). With split-merge on, a task with `split` that is not
    itself a submodel gets the relay's own URL and the task's credential; otherwise it goes."""
    options = {k: v for k, v in options.items() if k != SM_CLUSTER}
    if (not relay.config.no_split_merge and task.parent_uuid is None and split_size(options) > 0):
        options[SM_CLUSTER] = cluster_url(relay, task.uuid)
    return options


def check_input_name(relay: Relay, name: str) -> None:
    """Refuse `seed.zip` when split-merge is off, as ClusterODM does: it is a submodel's partial project."""
    if relay.config.no_split_merge and name == SEED:
        raise BadRequest("seed.zip refused: split-merge is turned off on this relay (--no-split-merge), and "
                         "seed.zip is only sent by ODM for a submodel of a split-merge task. Remove it from the "
                         "task's files, or ask the operator to turn split-merge on.")


# --- placement ----------------------------------------------------------------------------------------
async def running_parents(relay: Relay, but: str = "") -> int:
    """How many split-merge parents are on nodes and unfinished (the store's index of open tasks)."""
    count = 0
    for node_id in await relay.store.nodes_with_open_tasks():
        count += sum(1 for t in await relay.store.open_tasks_on(node_id)
                     if t.uuid != but and open_on(t) and is_parent(t))
    return count


async def slots_to_keep(relay: Relay, task: TaskRecord) -> int:
    """Slots the cluster must still have free after `task` is placed: one while another parent runs and
    `task` is a parent, so that the submodels of the parents running have somewhere to go. (The first parent
    always gets a slot: on a cluster of one slot it then processes its submodels itself, as ODM does when the
    cluster answers QUEUED.)"""
    if not is_parent(task):
        return 0
    return 1 if await running_parents(relay, but=task.uuid) else 0


def dispatch_order(task: TaskRecord) -> tuple:
    """Submodels first (their parent holds a slot and waits for them), then oldest first."""
    return (task.parent_uuid is None, task.created_ms, task.uuid)


# --- the parent's view of its submodels ------------------------------------------------------------
async def submodel_uuids(relay: Relay, parent: TaskRecord) -> list[str]:
    """The parent's committed submodels, oldest first."""
    return await relay.store.listed_uuids(child_owner(parent.owner, parent.uuid))


async def open_uploads(relay: Relay, parent: TaskRecord) -> list[TaskRecord]:
    owner = child_owner(parent.owner, parent.uuid)
    return [t for t in await relay.store.tasks_in(Stage.UPLOADING) if t.owner == owner]


def summary(info: dict[str, Any]) -> dict[str, Any]:
    """One entry of `relaySubmodels`: what a client shows as "submodel 3/8 running on node B"."""
    status = info.get("status")
    return {"uuid": info.get("uuid"), "node": info.get("node"),
            "status": status.get("code") if isinstance(status, dict) else None,
            "progress": info.get("progress", 0)}


async def with_submodels(relay: Relay, parent: TaskRecord, info: dict[str, Any], infos) -> dict[str, Any]:
    """The parent's info with `relaySubmodels` added (an extension: NodeODX clients ignore keys they do not
    know). `infos` answers each submodel's info with its node, as `/task/list?with_info=true` does."""
    uuids = await submodel_uuids(relay, parent)
    return {**info, SUBMODELS_KEY: [summary(i) for i in await infos(relay, uuids)]}


async def for_each_submodel(relay: Relay, parent: TaskRecord, action, what: str) -> None:
    """Run `action(relay, submodel)` on each of the parent's submodels, uploads included; one that fails is
    said in the log and the others go on."""
    children = [t for t in [await relay.store.get_task(u) for u in await submodel_uuids(relay, parent)] if t]
    children += await open_uploads(relay, parent)
    results = await asyncio.gather(*(action(relay, child) for child in children), return_exceptions=True)
    for child, result in zip(children, results):
        if isinstance(result, BaseException):
            log.warning("submodel %s failed uuid=%s parent=%s: %s", what, child.uuid, parent.uuid, result)
    if children:
        log.info("submodels %s parent=%s: %d", what, parent.uuid, len(children))


async def remove_submodels(relay: Relay, parent: TaskRecord) -> None:
    """A parent has ended: whatever submodels ODM left behind (it removes its own, unless it died) are removed,
    so that none keeps a node slot. (Imported here: removal needs the relay's state, which needs this module.)"""
    from .removal import remove_task
    await for_each_submodel(relay, parent, remove_task, "removed after their parent ended")
