"""NodeODX's REST paths, written once for the client, the relay and the development node.

Each path is a template in aiohttp's route syntax (`{uuid}`), so a server can register the template as it
is and a client fills it in with the function of the same name; the two sides cannot drift apart. The
list is NodeODX 2.3.1's `index.js`; paths are relative to the server's root (a client adds its own
prefix, such as a relay behind a reverse proxy). Values are put in as given: NodeODX's uuids and the
asset catalogue's names need no escaping.
"""
from __future__ import annotations

INFO = "/info"
OPTIONS = "/options"

AUTH_INFO = "/auth/info"
AUTH_LOGIN = "/auth/login"
AUTH_REGISTER = "/auth/register"
#: Every route under it answers without a token, on NodeODX as on the relay.
AUTH_PREFIX = "/auth/"

#: One request with every file (multipart), or a `zipurl`.
TASK_NEW = "/task/new"
#: Start a task whose files follow in uploads; answers the uuid they are sent under.
TASK_NEW_INIT = "/task/new/init"
TASK_NEW_UPLOAD = "/task/new/upload/{uuid}"
TASK_NEW_COMMIT = "/task/new/commit/{uuid}"

TASK_LIST = "/task/list"
TASK_INFO = "/task/{uuid}/info"
TASK_OUTPUT = "/task/{uuid}/output"
#: NodeODX serves `all.zip` only; the relay also serves one asset by its catalogue name.
TASK_DOWNLOAD = "/task/{uuid}/download/{asset}"

#: Commands: the task's uuid travels in the body (url-encoded or JSON), not in the path.
TASK_CANCEL = "/task/cancel"
TASK_REMOVE = "/task/remove"
TASK_RESTART = "/task/restart"


def upload(uuid: str) -> str:
    """Where the files of a task started with `/task/new/init` are sent."""
    return TASK_NEW_UPLOAD.format(uuid=uuid)


def commit(uuid: str) -> str:
    """Where an initialised task is told that its files are all there."""
    return TASK_NEW_COMMIT.format(uuid=uuid)


def task_info(uuid: str) -> str:
    return TASK_INFO.format(uuid=uuid)


def task_output(uuid: str) -> str:
    return TASK_OUTPUT.format(uuid=uuid)


def download(uuid: str, asset: str) -> str:
    """`asset` is `all.zip` on NodeODX, or a catalogue name (`shared.assets`) on the relay."""
    return TASK_DOWNLOAD.format(uuid=uuid, asset=asset)
