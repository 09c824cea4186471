"""The pacing's clock: the running event loop's time, which is time.monotonic in a real loop, so
that the pacing can be tested on a loop whose time is faked (looptime) instead of waited out."""

import asyncio
import time


def now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # no loop running: the same clock a real loop reads
        return time.monotonic()
