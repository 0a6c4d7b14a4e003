"""A worker that completes its own promise twice.

Completion is first-writer-wins: the first `complete_promise` returns True,
the second returns False, and the await sees the first payload. The await
returns at once because the promise is already complete.
"""

import py_example
from py_example.imports.host import (
    await_promise,
    complete_promise,
    create_promise,
    delete_promise,
)


class PyExample(py_example.PyExample):
    def run(self, first: str, second: str) -> str:
        promise_id = create_promise()
        first_won = complete_promise(promise_id, first.encode())
        second_won = complete_promise(promise_id, second.encode())
        payload = await_promise(promise_id)
        delete_promise(promise_id)
        return (
            f"first completion {first_won}, second completion {second_won}, "
            f"awaited {payload.decode()!r}"
        )
