"""Asyncio helpers the backends share."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def finish_despite_cancel(fut: asyncio.Future[T]) -> T:
    """Wait for ``fut`` even if the caller is cancelled meanwhile, then re-raise the cancel.

    For work that must not be abandoned half way (creating or removing a
    container, killing a process group): a cancelled caller still sees it
    done, so nothing is leaked on Ctrl-C.
    """
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait([fut])  # unlike await fut, never cancels fut
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return fut.result()
