"""The plugin's saved settings: server URL and results folder in QgsSettings, the token in QGIS's
authentication database (encrypted with the user's master password, never in plain settings), and
QGIS's proxy settings for the requests-based client.

Reading the token may ask for the master password, so it happens on the main thread: in the settings
page, or in an algorithm's `prepareAlgorithm`, which Processing runs on the main thread.
"""
from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

from .core.connection import Connection, proxies_for, resolve_connection

KEY_URL = "odx_relay/url"
KEY_AUTHCFG = "odx_relay/authcfg"
KEY_RESULTS = "odx_relay/results_folder"
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


def proxy_settings() -> dict:
    settings = QgsSettings()
    return {key: settings.value(key) for key in PROXY_KEYS}


def connection(run_url: str = "") -> Connection:
    """The connection for one run (main thread: it may read the token)."""
    resolved = resolve_connection(run_url, saved_url(), saved_token(), os.environ)
    return Connection(resolved.url, resolved.token, proxies_for(resolved.url, proxy_settings()))
