"""Who is asking: the relay's own tokens (`?token=`, as NodeODX), user accounts, and the admin key.

Node tokens are a different matter (see nodes.py): clients never see them. Owners are stored as
"token:<hash prefix>" or "user:<name>", never as the token itself, and every secret is compared in
constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from .errors import AuthError
from .models import UserRecord
from .store import Store

ANONYMOUS = ""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, salt: str) -> str:
    return hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2 ** 14, r=8, p=1).hex()


def request_token(request: web.Request) -> str:
    """The client's token: `?token=` as NodeODX clients send it, or an `Authorization: Bearer` header."""
    token = request.query.get("token", "")
    header = request.headers.get("Authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    return token


@dataclass
class Auth:
    store: Store
    token: str = ""
    admin_token: str = ""
    allow_registration: bool = False

    async def required(self) -> bool:
        return bool(self.token) or self.allow_registration

    async def identify(self, request: web.Request) -> str:
        """The owner id for this request, or AuthError (401 no token, 403 wrong token)."""
        token = request_token(request)
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
        return await self._issue(username, password, secrets.token_hex(16))

    async def login(self, username: str, password: str) -> str:
        """Check the password and hand out a fresh token (the previous one stops working)."""
        user = await self.store.get_user(username)
        expected = user.password_hash if user else hash_password("x", "00" * 16)
        given = hash_password(password, user.salt if user else "00" * 16)
        if user is None or not hmac.compare_digest(given, expected):
            raise AuthError(403, "Wrong username or password")
        return await self._issue(username, password, user.salt)

    async def _issue(self, username: str, password: str, salt: str) -> str:
        token = secrets.token_urlsafe(24)
        await self.store.put_user(UserRecord(username, salt, hash_password(password, salt), hash_token(token)))
        return token
