"""Lambdas and closures run in other workers, through `vow_promises`.

The functions given to `when` and `then` here are mostly lambdas and
closures: cloudpickle sends them by value, with the variables they close
over, to the worker that runs them. Rejections come back as exceptions
raised by `Result.value`, and `shout` shows a function that leaves its
promise to another worker (`current`, `PENDING`, `resolve`).
"""

import py_example
import vow_promises as vow


def describe(result: vow.Result) -> str:
    """How a promise settled, as text: its value, or its rejection."""
    try:
        return f"value {result.value}"
    except vow.Rejection as rejection:
        return str(rejection)


def relay(text: str):
    """Hands this function's promise on: a worker of its own settles it.

    An empty text is rejected here and now with `resolve`, which makes the
    return value irrelevant.
    """
    if not text:
        vow.resolve(vow.Rejection("nothing to shout"))
        return None
    vow.when(settle_loudly, vow.current(), text)
    return vow.PENDING


def settle_loudly(promise: vow.Promise, text: str) -> None:
    """Settles a promise handed over by another worker."""
    promise.resolve(text.upper())


class PyExample(vow.Dispatch, py_example.PyExample):
    def scale_and_sum(self, numbers: list[int], factor: int) -> int:
        products = [vow.when(lambda n: n * factor, n) for n in numbers]
        total = vow.all(products).then(lambda joined: sum(r.value for r in joined.value))
        return total.wait().value

    def count_up(self, start: int, steps: int) -> int:
        promise = vow.when(lambda: start)
        for step in range(1, steps + 1):
            promise = promise.then(lambda result, step=step: result.value + step)
        return promise.wait().value

    def divide(self, a: int, b: int) -> str:
        quotient = vow.when(lambda: a / b)
        handled = quotient.then(describe).wait().value
        return f"then: {handled}; wait: {describe(quotient.wait())}"

    def first_quotient(self, a: int, divisors: list[int]) -> str:
        quotients = [vow.when(lambda d: a // d, d) for d in divisors]
        return describe(vow.any(quotients).wait())

    def shout(self, text: str) -> str:
        return describe(vow.when(relay, text).wait())

    def ask(self, question: str) -> str:
        answer = vow.create(timeout=3600)
        link = answer.link(expires_in=3600)
        print(f"question {question}", flush=True)
        print(f"link {link.url}", flush=True)
        return describe(answer.wait())
