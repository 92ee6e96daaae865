"""Short-lived signed download URLs, and the one signing helper of the relay.

QGIS reads a streamed orthophoto through GDAL's /vsicurl/ and an EPT point cloud through its own HTTP
reader; neither should carry the owner's token, since the URL ends up in the project file. So the owner asks
the relay, with its token, for URLs that hold an expiry time and an HMAC signature instead:

    /task/{uuid}/signed/{expires}/{signature}/{asset}

The signature covers the task, the owner, the expiry and a *scope*: the asset's own name for a single file
(`orthophoto.tif`), or `ept` for `ept.json` and every tile under it. The signature sits in the path, not in
the query, because QGIS's EPT reader finds the tiles by cutting the last path segment off the URL of
`ept.json` and drops its query: `.../signed/E/S/ept-data/0-0-0-0.laz` stays signed. Node webhook URLs are
signed with the same helper (`signature`), under the relay's shared secret (the same for every replica).
"""
from __future__ import annotations

import hashlib
import hmac
import time

from shared.assets import asset_by_name

SIGNED_PREFIX = "signed"
#: How long a signed URL lasts unless the owner asks for less (or more, up to MAX_SECONDS).
DEFAULT_SECONDS = 12 * 3600
MAX_SECONDS = 7 * 24 * 3600
#: The scope of ept.json and of every EPT tile (ept-data/, ept-hierarchy/, ept-sources/).
EPT_SCOPE = "ept"


def signature(secret: bytes, *parts: str) -> str:
    """HMAC-SHA256 of the parts joined by ':' (32 hex digits): the relay's one way to sign what it hands out."""
    return hmac.new(secret, ":".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def scope_of(asset: str) -> str:
    """What a signature for `asset` opens: the asset alone, or the whole EPT folder for ept.json and its tiles."""
    found = asset_by_name(asset)
    if found is not None:
        return EPT_SCOPE if asset == "ept.json" else found.name
    return EPT_SCOPE  # (a tile path; the caller has checked it is one)


def download_signature(secret: bytes, uuid: str, owner: str, scope: str, expires: int) -> str:
    return signature(secret, "download", uuid, owner, scope, str(expires))


def signed_path(secret: bytes, uuid: str, owner: str, asset: str, expires: int) -> str:
    """The path (from the relay's root) of a signed URL for `asset` of task `uuid`, valid until `expires`."""
    sig = download_signature(secret, uuid, owner, scope_of(asset), expires)
    return f"/task/{uuid}/{SIGNED_PREFIX}/{expires}/{sig}/{asset}"


def expiry(asked: str | None, now: float | None = None) -> int:
    """The expiry time (s since 1970) for a lifetime asked in seconds (`expires_in`), bounded; ValueError if
    it is not a whole number of seconds, 1 or more."""
    seconds = DEFAULT_SECONDS
    if asked not in (None, ""):
        text = str(asked).strip()
        if not (text.isascii() and text.isdigit() and 0 < len(text) < 10 and int(text) >= 1):
            raise ValueError(f"expires_in must be a whole number of seconds, 1 or more, not {text[:20]!r}")
        seconds = min(int(text), MAX_SECONDS)
    return int(now if now is not None else time.time()) + seconds


def check(secret: bytes, uuid: str, owner: str, asset: str, expires: str, given: str,
          now: float | None = None) -> str:
    """"" when the signature opens `asset` of this task now, else why not (in words that name no secret)."""
    if not (expires.isascii() and expires.isdigit() and len(expires) < 12):
        return "This signed link is malformed (its expiry is not a time); ask the relay for a new one"
    wanted = download_signature(secret, uuid, owner, scope_of(asset), int(expires))
    if not hmac.compare_digest(given.encode(), wanted.encode()):
        return ("Invalid signature for this download: the link was altered, is for another file or task, or was "
                "signed by another relay")
    if int(expires) < (now if now is not None else time.time()):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires)))
        return (f"This signed link expired at {stamp}; ask the relay for a new one "
                f"(GET /task/{uuid}/signed-urls with your token)")
    return ""
