"""Map over a data set, count, then report, in workers of their own.

`run` counts the words of a text line by line: one `when` per line runs
`count_words` in a new worker with a timeout, an `all` joins the lines'
results, and a `then` runs `report` on them in another worker; `run` waits
for the report and returns it.

A line that starts with `!stall` is never counted: `count_words` returns
`PENDING` for it, leaving its promise pending with nobody to settle it, so
the promise times out and `report` gets that line's `TimedOut`.
"""

import py_example
import vow_promises as vow


def count_words(line: str):
    """The number of words in `line`, in the worker `when` started."""
    if line.startswith("!stall"):
        return vow.PENDING
    return len(line.split())


def report(joined: vow.Result) -> str:
    """The report of every line's result: the counts, and why a line has none."""
    results = joined.value
    counts, failures = [], []
    for number, result in enumerate(results, start=1):
        try:
            counts.append(result.value)
        except vow.Rejection as rejection:
            failures.append(f"line {number}: {rejection}")
    summary = f"{len(counts)} of {len(results)} lines counted, {sum(counts)} words"
    return "; ".join([summary, *failures])


class PyExample(vow.Dispatch, py_example.PyExample):
    def run(self, text: str, timeout_ms: int) -> str:
        timeout = timeout_ms / 1000
        counts = [vow.when(count_words, line, timeout=timeout) for line in text.splitlines()]
        return vow.all(counts).then(report).wait().value
