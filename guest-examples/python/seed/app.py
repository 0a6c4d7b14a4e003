"""The seed document's promise flow, run unchanged inside the `run` export.

The five lines in `run` are the seed's code exactly as written there; the
function around them only returns what the await produced.
"""

import py_example


class PyExample(py_example.PyExample):
    def run(self) -> str:
        from py_example.imports.host import create_promise, await_promise, complete_promise, delete_promise
        promise_id = create_promise()
        complete_promise(promise_id, str.encode("hello world"))
        payload = await_promise(promise_id)   # bytes
        delete_promise(promise_id)
        return payload.decode()
