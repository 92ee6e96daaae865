"""Webhook calls: NodeODX POSTs a task's info as JSON to the task's webhook when a processing run ends.

Like NodeODX, a failed call (no answer, or a status other than 200) is retried up to five more times,
waiting 5 s longer before each retry; nothing is raised, because nobody is waiting for the outcome.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger("devnode.webhooks")

RETRIES = 5
RETRY_STEP_SECONDS = 5.0
TIMEOUT = aiohttp.ClientTimeout(total=30)


def _shown(url: str) -> str:
    """The URL without its query, which may carry someone's secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def notify(session: aiohttp.ClientSession, url: str, payload: dict, uuid: str,
                 retry_step: float = RETRY_STEP_SECONDS) -> bool:
    """POST `payload` to `url`; True once the receiver answered 200."""
    for attempt in range(RETRIES + 1):
        if attempt:
            await asyncio.sleep(attempt * retry_step)
        try:
            async with session.post(url, json=payload, timeout=TIMEOUT) as response:
                if response.status == 200:
                    log.info("task %s webhook %s answered 200", uuid, _shown(url))
                    return True
                reason = f"status {response.status}"
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            reason = type(exc).__name__
        log.warning("task %s webhook %s failed (%s), attempt %d of %d", uuid, _shown(url), reason,
                    attempt + 1, RETRIES + 1)
    return False
