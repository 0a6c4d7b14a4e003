"""State and nondeterminism that survive restarts.

A worker keeps `counter` and `last` in memory only. Vow records every value
the host hands the guest (random bytes, clock readings, promise payloads) in
the worker's operation log; when the worker comes back into memory (after a
restart, or after it was evicted) its past invocations are replayed against
that log, so the counter counts on and `last_sample` returns exactly what
`sample` returned, UUID, random number and clock readings included.
"""

import random
import time
import uuid
from typing import Optional

import py_example

counter = 0
last: Optional[str] = None


class PyExample(py_example.PyExample):
    def increment(self) -> int:
        global counter
        counter += 1
        return counter

    def sample(self) -> str:
        global last
        last = " ".join(
            (
                str(uuid.uuid4()),
                repr(random.random()),
                str(time.time_ns()),
                str(time.monotonic_ns()),
            )
        )
        return last

    def last_sample(self) -> Optional[str]:
        return last
