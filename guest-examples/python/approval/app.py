"""Parks a worker until someone completes its promise over the REST API.

`request_approval` prints the promise id in the text form the CLI and the REST
API use, `{component-id}/{worker-name}/{oplog-index}`, then waits. Complete it
with `vow promise complete <id> --data approved` (or the REST `complete`
call); the payload becomes the decision.
"""

import py_example
from py_example.imports.host import PromiseId, await_promise, create_promise


def promise_text(promise_id: PromiseId) -> str:
    """Formats a promise id as `{component-id}/{worker-name}/{oplog-index}`.

    The component id is a UUID whose upper 64 bits are `high_bits` and lower
    64 bits `low_bits`, printed in the canonical 8-4-4-4-12 form.
    """
    worker = promise_id.worker_id
    uuid = worker.component_id.uuid
    digits = f"{uuid.high_bits:016x}{uuid.low_bits:016x}"
    component = "-".join(
        (digits[0:8], digits[8:12], digits[12:16], digits[16:20], digits[20:32])
    )
    return f"{component}/{worker.worker_name}/{promise_id.oplog_idx}"


class PyExample(py_example.PyExample):
    def request_approval(self, subject: str) -> str:
        promise_id = create_promise()
        # Flush: the id is what the operator needs while this worker waits.
        print(
            f'approval needed for "{subject}": complete promise {promise_text(promise_id)}',
            flush=True,
        )
        decision = await_promise(promise_id).decode()
        return f'"{subject}": {decision}'
