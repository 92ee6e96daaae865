"""Who is asking: the relay's own tokens (`?token=`, as NodeODX), user accounts, and the admin key.

Node tokens are a different matter (see nodes.py): clients never see them. Owners are stored as
"token:<hash prefix>" or "user:<name>", never as the token itself, and every secret is compared in
constant time.

A password costs an scrypt hash (tens of milliseconds of CPU, on purpose): it runs in a small thread pool,
never on the event loop, so logins do not stall every other request; and failed logins are limited per
client address and per username (`--login-failures` within `--login-window` seconds), so that guessing
passwords is slow and cannot keep the CPU busy.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from . import signed_urls
from .errors import AuthError, HTTPError
from .models import TaskRecord, UserRecord
from .split_merge import alive, child_owner, credential_parent, is_credential
from .store import Store

ANONYMOUS = ""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, salt: str) -> str:
    return hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2 ** 14, r=8, p=1).hex()


# Hashes run here, at most one per two cores, so that a burst of logins leaves the event loop a core.
HASHING = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) // 2), thread_name_prefix="password-hash")


async def hashed(password: str, salt: str) -> str:
    """`hash_password` off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(HASHING, hash_password, password, salt)


class TooManyLogins(HTTPError):
    """429: too many failed logins from this client or for this username; try again after `retry_after` s."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(429, message)
        self.retry_after = retry_after


class LoginLimiter:
    """Failed logins, counted per client address and per username over a sliding window of `window` seconds.

    Once either has `failures` of them, a login from that address or for that username is refused before its
    password is hashed (the right password too: an attacker must not learn it by the answer), until the oldest
    failure leaves the window. A success forgets its username's failures (a user who mistyped), not its
    address's. Behind a balancer every request comes from the balancer: give its address (`trusted`,
    addresses or CIDR networks) and the last address it adds to X-Forwarded-For names the client instead.
    Counts live in this process (replicas count apart)."""

    MAX_KEYS = 100_000  # forgotten oldest first past this: memory stays bounded under a flood of names

    def __init__(self, failures: int = 5, window: float = 300.0, trusted: Iterable[str] = ()):
        self.failures, self.window = failures, window
        self.trusted = [ipaddress.ip_network(t.strip(), strict=False) for t in trusted if t.strip()]
        self.seen: dict[str, deque[float]] = {}

    def client_address(self, peer: str | None, forwarded: str | None) -> str:
        """The client's address: the peer's, or, from a trusted proxy, the last one of X-Forwarded-For."""
        peer = peer or ""
        if not forwarded or not self.trusted:
            return peer
        try:
            if not any(ipaddress.ip_address(peer) in net for net in self.trusted):
                return peer
            return str(ipaddress.ip_address(forwarded.split(",")[-1].strip()))
        except ValueError:
            return peer

    @staticmethod
    def keys(address: str, username: str) -> tuple[str, str]:
        return "address:" + address, user_key(username)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self.seen.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.seen[key]
        return times

    def check(self, address: str, username: str) -> None:
        """TooManyLogins if this address or username has used up its failures."""
        if self.failures <= 0:
            return
        now = time.monotonic()
        for key, who in zip(self.keys(address, username), ("from your address", f"for the username {username!r}")):
            times = self._recent(key, now)
            if len(times) >= self.failures:
                retry_after = max(1, math.ceil(times[-self.failures] + self.window - now))
                raise TooManyLogins(f"Too many failed logins {who}: {len(times)} in the last {self.window:g} "
                                    f"seconds. Try again in {retry_after} seconds.", retry_after)

    def failed(self, address: str, username: str) -> None:
        if self.failures <= 0:
            return
        now = time.monotonic()
        for key in self.keys(address, username):
            self._recent(key, now)
            self.seen.setdefault(key, deque(maxlen=self.failures)).append(now)
        while len(self.seen) > self.MAX_KEYS:
            del self.seen[next(iter(self.seen))]

    def succeeded(self, username: str) -> None:
        self.seen.pop(user_key(username), None)


def user_key(username: str) -> str:
    return "user:" + username.lower()


def request_token(request: web.Request) -> str:
    """The client's token: `?token=` as NodeODX clients send it, or an `Authorization: Bearer` header."""
    token = request.query.get("token", "")
    header = request.headers.get("Authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    return token


def check_signed_download(secret: bytes, task: TaskRecord, asset: str, expires: str, given: str) -> str:
    """The owner a signed download URL speaks for (see signed_urls.py), or AuthError 403 saying why not: altered,
    for another task or file, or expired. Only the signed download route calls this, and only for GET and HEAD:
    a signature opens one task's file (or its EPT folder) for reading, nothing else."""
    problem = signed_urls.check(secret, task.uuid, task.owner, asset, expires, given)
    if problem:
        raise AuthError(403, problem)
    return task.owner


@dataclass
class Auth:
    store: Store
    token: str = ""
    admin_token: str = ""
    allow_registration: bool = False
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    secret: bytes = b""  # the store's shared secret, read once: it signs split-merge credentials

    async def required(self) -> bool:
        return bool(self.token) or self.allow_registration

    async def identify(self, request: web.Request) -> str:
        """The owner id for this request, or AuthError (401 no token, 403 wrong token)."""
        token = request_token(request)
        if is_credential(token):
            return await self.submodel_owner(token)
        if not await self.required():
            return ANONYMOUS
        if not token:
            raise AuthError(401, "Missing token: add ?token=YOUR_TOKEN to the request")
        if self.token and hmac.compare_digest(token.encode(), self.token.encode()):
            return "token:" + hash_token(token)[:16]
        user = await self.store.user_by_token_hash(hash_token(token))
        if user is not None:
            return "user:" + user.username
        raise AuthError(403, "Invalid authentication token")

    async def submodel_owner(self, token: str) -> str:
        """The owner id of a split-merge credential (`split_merge.py`): the parent's owner, scoped to that parent,
        while the parent is unfinished; AuthError once it has ended or if the credential is not this relay's."""
        if not self.secret:
            self.secret = await self.store.shared_secret()
        parent_uuid = credential_parent(self.secret, token)
        if parent_uuid is None:
            raise AuthError(403, "Invalid authentication token")
        parent = await self.store.get_task(parent_uuid)
        if parent is None or not alive(parent):
            raise AuthError(403, "This split-merge credential has ended: its task is no longer running")
        return child_owner(parent.owner, parent.uuid)

    def check_admin(self, request: web.Request) -> None:
        if not self.admin_token:
            raise AuthError(403, "The admin API is off: start the relay with --admin-token")
        given = request.headers.get("Authorization", "")
        given = given[7:].strip() if given.lower().startswith("bearer ") else request.query.get("admin_token", "")
        if not given:
            raise AuthError(401, "Missing admin token: send 'Authorization: Bearer ADMIN_TOKEN'")
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            raise AuthError(403, "Invalid admin token")

    async def register(self, username: str, password: str) -> str:
        if not self.allow_registration:
            raise AuthError(403, "Registration is turned off on this relay")
        plain = username.replace("-", "").replace("_", "").replace(".", "")
        if not username or len(username) > 64 or not plain.isalnum():
            raise AuthError(400, "Choose a username of letters, digits, '.', '-' or '_' (64 at most)")
        if len(password) < 8:
            raise AuthError(400, "Choose a password of at least 8 characters")
        if await self.store.get_user(username) is not None:
            raise AuthError(409, f"The username {username!r} is taken")
        salt = secrets.token_hex(16)
        return await self._issue(username, await hashed(password, salt), salt)

    async def login(self, username: str, password: str, address: str = "") -> str:
        """Check the password and hand out a fresh token (the previous one stops working). `address` is the
        client's, for the limit on failed logins."""
        self.limiter.check(address, username)
        user = await self.store.get_user(username)
        given = await hashed(password, user.salt if user else "00" * 16)  # one hash either way: same time
        if user is None or not hmac.compare_digest(given, user.password_hash):
            self.limiter.failed(address, username)
            raise AuthError(403, "Wrong username or password")
        self.limiter.succeeded(username)
        return await self._issue(username, given, user.salt)

    async def _issue(self, username: str, password_hash: str, salt: str) -> str:
        token = secrets.token_urlsafe(24)
        await self.store.put_user(UserRecord(username, salt, password_hash, hash_token(token)))
        return token

    def client_address(self, request: web.Request) -> str:
        return self.limiter.client_address(request.remote, request.headers.get("X-Forwarded-For"))
