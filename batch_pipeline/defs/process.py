"""What a step's process does once, the first time one of this code location's ops runs in it."""

import atexit
import functools
import gc


@functools.cache
def freeze_loaded_objects() -> None:
    """By the first step, Dagster's, openai's and pandas' modules are loaded: hundreds of thousands
    of objects that live as long as the process. Frozen, the garbage collector stops scanning them
    during the run, and at exit skips them instead of spending one to two seconds on them after
    every `dagster job execute` (docs/benchmarks.md); the OS frees them. Only run and step
    processes: the webserver and the daemon, which also load the code location, are left alone."""
    gc.freeze()
    atexit.register(gc.freeze)
