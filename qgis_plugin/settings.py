"""The plugin's saved settings: server URL and results folder in QgsSettings, the token in QGIS's
authentication database (encrypted with the user's master password, never in plain settings), and
QGIS's proxy settings for the requests-based client.

Reading the token may ask for the master password, so it happens on the main thread: in the settings
page, or in an algorithm's `prepareAlgorithm`, which Processing runs on the main thread.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

from .core.connection import Connection, proxies_for, resolve_connection

KEY_URL = "odx_relay/url"
KEY_AUTHCFG = "odx_relay/authcfg"
KEY_RESULTS = "odx_relay/results_folder"
KEY_AUTO_LOAD = "odx_relay/auto_load"
KEY_STARTED = "odx_relay/started_here"
#: At most this many tasks started here are remembered (the oldest are let go first).
MAX_STARTED = 100
AUTH_NAME = "ODX Relay token"
AUTH_METHOD = "Basic"  # username unused, the token is the password: every QGIS build has this method
PROXY_KEYS = ("proxy/proxyEnabled", "proxy/proxyType", "proxy/proxyHost", "proxy/proxyPort",
              "proxy/proxyUser", "proxy/proxyPassword", "proxy/proxyExcludedUrls", "proxy/noProxyUrls")


class TokenStoreError(RuntimeError):
    """The token could not be kept in the authentication database."""


def saved_url() -> str:
    return str(QgsSettings().value(KEY_URL, "") or "")


def default_results_folder() -> Path:
    return Path(QgsApplication.qgisSettingsDirPath()) / "odx_relay" / "results"


def results_folder() -> Path:
    value = str(QgsSettings().value(KEY_RESULTS, "") or "")
    return Path(value) if value else default_results_folder()


def saved_token() -> str:
    """The token saved for the saved server, or "" (none saved, or the database is unavailable)."""
    authcfg = str(QgsSettings().value(KEY_AUTHCFG, "") or "")
    manager = QgsApplication.authManager()
    if not authcfg or manager.isDisabled():
        return ""
    ok, config = manager.loadAuthenticationConfig(authcfg, QgsAuthMethodConfig(), True)
    return config.config("password", "") if ok else ""


def save(url: str, token: str, results: str = "") -> None:
    """Keep the URL and results folder in QgsSettings and the token in the authentication database."""
    settings = QgsSettings()
    settings.setValue(KEY_URL, url.strip())
    settings.setValue(KEY_RESULTS, results.strip())
    manager = QgsApplication.authManager()
    authcfg = str(settings.value(KEY_AUTHCFG, "") or "")
    if not token:
        if authcfg and not manager.isDisabled():
            manager.removeAuthenticationConfig(authcfg)
        settings.remove(KEY_AUTHCFG)
        return
    if manager.isDisabled():
        raise TokenStoreError("QGIS's authentication database is not available, so the token was not saved: "
                              + manager.disabledMessage())
    config = QgsAuthMethodConfig(AUTH_METHOD)
    config.setName(AUTH_NAME)
    config.setUri(url.strip())
    config.setConfig("username", "")
    config.setConfig("password", token)
    if authcfg and authcfg in manager.configIds():
        config.setId(authcfg)
        stored = manager.updateAuthenticationConfig(config)
    else:
        stored, config = manager.storeAuthenticationConfig(config)
    if not stored:
        raise TokenStoreError("The token could not be saved in QGIS's authentication database "
                              "(was the master password given?)")
    settings.setValue(KEY_AUTHCFG, config.id())


def auto_load() -> bool:
    """Whether the task panel loads the results of tasks started from this QGIS when they complete (off at first)."""
    return str(QgsSettings().value(KEY_AUTO_LOAD, False)).lower() in ("true", "1")


def set_auto_load(on: bool) -> None:
    QgsSettings().setValue(KEY_AUTO_LOAD, bool(on))


# --- tasks started from this QGIS ----------------------------------------------------------------
# Kept in QgsSettings (so they survive a restart of QGIS) until their results are loaded or they end otherwise.
# Written from Processing's worker threads too: QSettings may be used from any thread, one object per use.
_STARTED_LOCK = threading.Lock()
_FOLLOWED: set[str] = set()  # started tasks an algorithm run in this QGIS follows right now


def started_here() -> list[str]:
    value = QgsSettings().value(KEY_STARTED, "") or ""
    return [uuid for uuid in str(value).split(",") if uuid]


def remember_started(uuid: str) -> None:
    with _STARTED_LOCK:
        kept = [u for u in started_here() if u != uuid] + [uuid]
        QgsSettings().setValue(KEY_STARTED, ",".join(kept[-MAX_STARTED:]))


def forget_started(uuid: str) -> None:
    with _STARTED_LOCK:
        kept = started_here()
        if uuid in kept:
            QgsSettings().setValue(KEY_STARTED, ",".join(u for u in kept if u != uuid))


def following_here(uuid: str, following: bool) -> None:
    with _STARTED_LOCK:
        (_FOLLOWED.add if following else _FOLLOWED.discard)(uuid)


def followed_here(uuid: str) -> bool:
    """An algorithm run of this QGIS follows the task now (it will load its results itself)."""
    with _STARTED_LOCK:
        return uuid in _FOLLOWED


def proxy_settings() -> dict:
    settings = QgsSettings()
    return {key: settings.value(key) for key in PROXY_KEYS}


def connection(run_url: str = "") -> Connection:
    """The connection for one run (main thread: it may read the token)."""
    resolved = resolve_connection(run_url, saved_url(), saved_token(), os.environ)
    return Connection(resolved.url, resolved.token, proxies_for(resolved.url, proxy_settings()))
