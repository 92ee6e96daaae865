"""Where the relay intentionally differs from a real NodeODX 2.3.1 node: the one list.

Everything else in the NodeODX API must be indistinguishable, and the conformance suite checks it. Each
entry here is asserted by at least one test marked `@difference("<id>")`, and README.md's table "Where the
relay differs from NodeODX" shows exactly these rows (test_conformance_differences.py checks both). To add
or change a difference: edit it here, mark the test that shows it, and update the README row.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Difference:
    id: str
    what: str  # what a client sees, relay vs NodeODX
    why: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "info-relay-key",
        "`GET /info` has one more key, `relay`: the relay's version, its node counts (online, offline, locked) "
        "and its own queue.",
        "Operators and the plugin see the cluster's health in the call they already make; clients ignore "
        "keys they do not know."),
    Difference(
        "info-cluster-totals",
        "`GET /info` describes the cluster: `totalMemory`, `availableMemory`, `cpuCores`, `maxParallelTasks` "
        "and `taskQueueCount` are sums over the online nodes (the queue count adds the relay's own queue), "
        "`maxImages` is the largest node limit, `version` the lowest node version.",
        "The relay is one node made of many: what it can take is what they can take together."),
    Difference(
        "auth-info-message",
        "`GET /auth/info` says `Accounts are not enabled on this relay` (NodeODX: `Authentication not "
        "available on this node`); with `--allow-registration`, `loginUrl` and `registerUrl` are set.",
        "The relay has accounts of its own; the keys and their meaning are NodeODX's."),
    Difference(
        "token-errors-http-status",
        "A missing relay token is answered HTTP 401, a wrong one HTTP 403, each with a JSON "
        "`{\"error\": ...}`; NodeODX answers HTTP 200 with "
        "`{\"error\": \"Invalid authentication token: token does not match.\"}`.",
        "Balancers, proxies and monitoring see refused requests for what they are; pyodx reads both forms "
        "as an error."),
    Difference(
        "options-checked-early",
        "Options are checked at `/task/new/init`, `/task/new` and `/task/restart`: an unknown option name "
        "is an error that names it (NodeODX drops unknown options silently), so are `options` that are not a "
        "JSON list (NodeODX ignores them), and every option error is worded by the relay (NodeODX's error is "
        "a JSON list in a string).",
        "A mistyped option must not run a task with defaults for hours; the error says which option and "
        "why."),
    Difference(
        "restart-in-relay-queue",
        "`/task/restart` of a task that waits in the relay's own queue (status 10, on no node yet) answers "
        "`{\"success\": true}` and the task is sent with the new `options`; NodeODX refuses to restart a "
        "queued task (`Task cannot be restarted`), as the relay does once the task is queued on a node.",
        "Until a node holds the task nothing has started, so its options can still change at no cost."),
    Difference(
        "image-count-checked-early",
        "`/task/new/commit` and `/task/new` refuse, with an error, a task of fewer than 2 images or of more "
        "images than any node (or `--max-images`) takes; NodeODX accepts it and the task fails later "
        "(status 30), or in test mode processes 1 image.",
        "The limits are known when the upload ends: refusing then saves a node slot, the wait, and a "
        "failure the client would only see later."),
    Difference(
        "range-206",
        "`GET /task/{uuid}/download/all.zip` with a `Range` header is answered 206 with that part, and "
        "plain downloads say `Accept-Ranges: bytes`; NodeODX ignores `Range` and always answers 200 with "
        "the whole file.",
        "Downloads can resume, and pyodx fetches large zips in parallel chunks when ranges are offered."),
    Difference(
        "single-assets",
        "`GET /task/{uuid}/download/{asset}` serves single products by name (`orthophoto.tif`, `dsm.tif`, "
        "`dtm.tif`, `georeferenced_model.laz`, ...; the catalogue in `shared/assets.py`); NodeODX answers "
        "`{\"error\": \"Invalid asset\"}` for anything but `all.zip`.",
        "The plugin and other clients fetch only what they load instead of the whole zip."),
    Difference(
        "zipurl-private-refused",
        "`/task/new` with a `zipurl` on a private, loopback or link-local address is refused with an error "
        "and the URL is never fetched, unless the operator allows it (`--zipurl-allow-private`); NodeODX "
        "downloads any URL.",
        "SSRF protection: the relay usually sits next to a private network that its clients must not "
        "reach through it."),
    Difference(
        "webhook-private-refused",
        "`/task/new/init` and `/task/new` with a `webhook` that is not an http(s) URL, or that is on a private, "
        "loopback or link-local address, are refused with an error naming `--webhook-allow-private` (the "
        "operator's flag that allows such addresses); when the task ends, the webhook's name is resolved to "
        "public addresses only and a redirect is not followed. NodeODX takes any webhook and POSTs to it.",
        "SSRF protection, as for `zipurl`: a webhook is a request the relay sends on a client's behalf, from "
        "inside its network."),
    Difference(
        "remove-open-upload",
        "`/task/remove` of an upload that was begun with `/task/new/init` and never committed removes it and "
        "its files (`{\"success\": true}`), for its owner only; NodeODX answers `{\"success\": false, "
        "\"error\": \"<uuid> not found\"}` and keeps the upload until its own clean-up.",
        "A client that gives up on an upload can free what it holds at once, which matters since each client "
        "may have only `--max-open-uploads` of them open."),
    Difference(
        "open-uploads-capped",
        "A client (token or account) may have at most `--max-open-uploads` uploads (default 20) begun with "
        "`/task/new/init` and not yet committed; one more init is refused with an error that says how many are "
        "open and how to free them. NodeODX takes any number.",
        "An upload holds staged files and a record until it expires; a client that opens them and never "
        "commits must not fill the relay's disk or its store."),
    Difference(
        "list-paging",
        "`GET /task/list` takes `limit` and `offset` and answers that page of the list, and filters and an order "
        "applied first: `status` (codes or names, comma-separated), `created_after`/`created_before`, `name` "
        "(contains, any case), `min_duration`/`max_duration` (seconds of processing time), `sort` (created, "
        "status, images or duration, `.asc` or `.desc`), from what the relay last knew of each task (a bad "
        "value: HTTP 400 with `{\"error\": ...}` naming the parameter); NodeODX ignores them all and answers the "
        "whole list. Without them both answer the same.",
        "A client with tens of thousands of tasks reads them a page at a time, or just the ones it wants (the "
        "newest completed ten); a NodeODX client sends none of them and sees no change."),
    Difference(
        "cancel-ended-refused",
        "`/task/cancel` of a task that has completed or failed is refused with `{\"success\": false, \"error\": "
        "...}` that says so, and the task stays as it was; NodeODX answers `{\"success\": true}` and turns it "
        "into a canceled task (status 50) although its outputs are still there.",
        "A finished task has nothing left to stop: canceling it would only make clients refuse results that are "
        "still downloadable (a cancel sent late, or to the wrong task, must not cost a whole run)."),
    Difference(
        "list-with-info",
        "`GET /task/list?with_info=true` answers each task's `/task/{uuid}/info` (with one more key, `node`: the "
        "node holding it, null while it waits in the relay's queue) instead of `{\"uuid\": ...}`; NodeODX ignores "
        "the parameter and answers the uuids.",
        "A client following many tasks (the QGIS task panel) asks once per interval instead of once per task; "
        "it sees uuids alone from a NodeODX node and then asks for each task's info."),
    Difference(
        "sm-cluster-relay",
        "A task's `sm-cluster` option is the relay's: with `split`, its own `--public-url` with a credential "
        "scoped to the task (`?token=sm.<uuid>.<signature>`, dead once the task ends); without `split` (or with "
        "`--no-split-merge`) it is removed. NodeODX keeps the client's value.",
        "ODM on the task's node sends its submodels back through the relay, which spreads them over the cluster; "
        "a node is never pointed at an address a client chose."),
    Difference(
        "submodels-in-info",
        "The info of a task with `split` has one more key, `relaySubmodels`: `[{\"uuid\", \"node\", \"status\", "
        "\"progress\"}, ...]`, its submodels that exist now (in `/task/list?with_info=true` too while it runs).",
        "A client shows \"submodel 3/8 running on node B\"; clients ignore keys they do not know."),
)

BY_ID = {entry.id: entry for entry in DIFFERENCES}
assert len(BY_ID) == len(DIFFERENCES), "difference ids must be unique"


def difference(difference_id: str) -> pytest.MarkDecorator:
    """Mark a test as the proof of one intended difference: `@difference("range-206")`."""
    if difference_id not in BY_ID:
        raise KeyError(f"no difference {difference_id!r} in tests/conformance/differences.py")
    return pytest.mark.difference(difference_id)
