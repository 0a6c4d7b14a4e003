"""Promises that run Python functions in other workers, for Vow guests.

It reads like the seed library: `when` runs a function in a worker of its
own and returns a promise of its result, `then` runs another once that
promise settles, `all` and `any` join promises, and a handler gets a
`Result` whose `value` is the value or raises the rejection::

    import vow_promises as vow

    def count_words(line):
        return len(line.split())

    def total(joined):
        return sum(result.value for result in joined.value)

    counts = [vow.when(count_words, line, timeout=10) for line in lines]
    print(vow.all(counts).then(total).wait().value)

Import the module rather than its names: its `all` and `any` would hide
Python's own.

Everything below is built on `vow:host/promises`, so it is durable: the
promises, the work in other workers and the joins survive a crash or a
restart of Vow, and a worker that comes back by replay sees the same
answers.

How it is built:

- **Functions travel as pickles.** A `when` or `then` target must be an
  export of the component, and Python functions are not exports, so every
  call goes through one of the exports of the world `vow-python:promises/
  dispatch` (`guest-examples/python/lib/vow-promises.wit`): the guest's
  world includes it, and the guest's app class inherits the exports'
  implementation, `Dispatch`. The call carries the function and its
  arguments pickled with cloudpickle: a function of a module (the guest's
  `app`, or any module in the component) travels by name, and a lambda or
  a closure travels by value with the variables it closes over, so both run
  in the other worker, which runs the same component. What a lambda closes
  over, and the module-level values it uses, arrive as copies: the other
  worker has memory of its own.
- **Values travel as JSON.** What a function returns (or `resolve` is
  given) becomes the promise's payload as JSON text, so other guests (the
  Rust SDK reads JSON too), `vow promise show` and REST clients can read
  it, and a promise completed from outside with JSON text reads as that
  value. JSON has no tuples (they come back as lists), no sets and no
  bytes; a value it cannot hold rejects the promise. Arguments are part of
  the pickled call, so they may be any picklable object (a `Promise` too).
- **Rejections are exceptions.** An exception a function raises (or gives
  to `resolve`) rejects its promise with the message `Type: text`;
  a `Rejection` keeps its own message and data. Whoever reads the result
  gets a `Rejection` raised from `Result.value`: `TimedOut` when the
  promise's timeout passed, `Failed` when the worker that was to settle it
  failed (trapped), plain `Rejection` for one on purpose.
- **`then` handlers see rejections.** A handler runs with the source's
  `Result` whether it was fulfilled or rejected, as in the seed library.
  Vow's `then` hands an export only the source's settlement, which does not
  say which Python function to run, so `Promise.then` makes four promises:
  one completed with the pickled handler, a `then` of `vow-outcome`
  on the source (which turns its settlement into a value, so a rejection
  reaches the handler instead of skipping it), an `all` of those two, and
  a `then` of `vow-continue` on that `all`, which runs the handler. So
  each `then` runs two workers: a short one for `vow-outcome` and the
  handler's.
- **`all` waits for every promise**, as in the seed library, and its value
  is the list of their `Result`s, rejected ones included: it is Vow's `all`
  of a `vow-outcome` `then` on each promise (one short worker each). `any`
  is Vow's `any` as it is: the first value, or a rejection once every
  promise is rejected.
"""

import json
import pickle
import struct
import sys
import traceback
from dataclasses import dataclass

import cloudpickle
from componentize_py_types import Err, Ok
from py_example.imports import host as golem
from py_example.imports import promises as wit
from py_example.imports.promises import ErrorKind, LinkAction, PromiseOptions, Target

__all__ = [
    "PENDING",
    "ComposeError",
    "Dispatch",
    "Failed",
    "Link",
    "Promise",
    "Rejection",
    "Result",
    "TimedOut",
    "all",
    "any",
    "create",
    "current",
    "resolve",
    "when",
]


# Rejections and results.


class Rejection(Exception):
    """Why a promise was rejected; raised by `Result.value`.

    Raise one (or pass one to `resolve`) to reject a promise with this
    message and data instead of `Type: text`. Its subclasses say why a
    promise was rejected by Vow rather than on purpose: `TimedOut` and
    `Failed`. `kind` is the WIT `error-kind`'s name, `message` the text for
    people and `data` the bytes the rejecter attached (empty when none).
    """

    kind = "rejected"
    _label = "rejected"

    def __init__(self, message: str, data: bytes = b""):
        super().__init__(message)
        self.message = message
        self.data = bytes(data)

    def __str__(self) -> str:
        return f"{self._label}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self):
        return (type(self), (self.message, self.data))


class TimedOut(Rejection):
    """The promise's timeout passed while it was pending."""

    kind = "timed-out"
    _label = "timed out"


class Failed(Rejection):
    """The worker that was to settle the promise failed (trapped), or its
    payload could not be read."""

    kind = "failed"
    _label = "failed"


_REJECTIONS = {
    ErrorKind.REJECTED: Rejection,
    ErrorKind.TIMED_OUT: TimedOut,
    ErrorKind.FAILED: Failed,
}


class ComposeError(Exception):
    """Vow made no promise: `when`, `then`, `all` or `any` was refused,
    with the host's reason (for example a world without the
    `vow-python:promises/dispatch` exports)."""


class Result:
    """How a promise settled: a value, or the `Rejection` that rejected it."""

    __slots__ = ("_value", "error")

    def __init__(self, value=None, error: Rejection | None = None):
        self._value = value
        self.error = error

    @property
    def ok(self) -> bool:
        """Whether the promise was fulfilled."""
        return self.error is None

    @property
    def value(self):
        """The value, or raises the rejection."""
        if self.error is not None:
            raise self.error
        return self._value

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Result(error={self.error!r})"
        return f"Result(value={self._value!r})"


class _Pending:
    def __repr__(self) -> str:
        return "vow_promises.PENDING"

    def __reduce__(self):
        # A closure that mentions PENDING carries a reference to this one
        # object, not a copy, so `is PENDING` holds in the other worker.
        return "PENDING"


PENDING = _Pending()
"""Returned by a function run by `when` or `then` to leave its promise
pending: it settles later, by `resolve` or by whoever the function handed
the promise to (see `current`)."""


# Promises.


class Promise:
    """A promise of a value, settled once by a value or a `Rejection`.

    Made by `when`, `Promise.then`, `all`, `any` and `current`. It may be
    passed to a function that runs in another worker (it is picklable);
    `str()` gives the id in the form the CLI and the REST API use,
    `{component-id}/{worker-name}/{oplog-index}`.
    """

    def __init__(self, id: golem.PromiseId, reader=None):
        self.id = id
        # How the payload becomes a Result: JSON, or the outcomes of an all.
        self._reader = reader if reader is not None else _JSON

    def wait(self, timeout: float | None = None) -> Result | None:
        """Waits until the promise settles and returns how.

        With a `timeout` in seconds, returns None if it is still pending
        then (the promise itself is not changed). The worker is suspended
        while it waits, durably: after a restart it waits on by replay.
        """
        if timeout is None:
            try:
                payload = wit.wait(self.id)
            except Err as err:
                return Result(error=_rejection(err.value))
            return self._reader.read(payload)
        settled = wit.wait_any([self.id], _millis(timeout, "timeout"))
        return None if settled is None else self._read(settled[1])

    def poll(self) -> Result | None:
        """How the promise settled, or None while it is pending."""
        settled = wit.poll(self.id)
        return None if settled is None else self._read(settled)

    def then(self, fn, *, timeout: float | None = None, retention: float | None = None) -> "Promise":
        """Once this promise settles, runs `fn(result)` in a new worker.

        `fn` gets this promise's `Result` (fulfilled or rejected) and
        settles the returned promise as a function run by `when` does: by
        its return value, an exception, `resolve` or `PENDING`. `timeout`
        and `retention` (seconds) are the new promise's, and the timeout
        counts from now. Raises `ComposeError` if Vow refuses, and
        pickling errors if `fn` cannot be pickled.
        """
        call = _pickle((fn, self._reader))
        handler = wit.create(_NO_OPTIONS)
        golem.complete_promise(handler, call)
        outcome = _compose(wit.then, self.id, _own("vow-outcome"), _NO_OPTIONS)
        joined = _compose(wit.all, [handler, outcome], _NO_OPTIONS)
        made = _compose(
            wit.then, joined, _own("vow-continue"), _options(timeout, retention)
        )
        return Promise(made)

    def resolve(self, value_or_exception) -> bool:
        """Settles the promise: an exception rejects it, anything else
        fulfils it with its JSON. True if this call settled it, False if it
        was settled already (the first settlement wins).

        Raises TypeError or ValueError, settling nothing, for a value JSON
        cannot hold.
        """
        if isinstance(value_or_exception, BaseException):
            message, data = _rejection_text(value_or_exception)
            settled = wit.reject(self.id, message, data)
        else:
            settled = golem.complete_promise(self.id, _encode(value_or_exception))
        if self.id == _running.promise_id:
            _running.settled = True
        return settled

    def link(self, action: str = "complete", *, expires_in: float | None = None) -> "Link":
        """A completion link for this promise, to hand to a person or a
        system outside: whoever holds it can see the promise and settle it
        as `action` allows ("complete", "reject" or "both"), with no API
        token, until it expires (`expires_in` seconds; 7 days by default,
        366 at most). Only this worker's own pending promises made by
        `create` can have one; otherwise raises `ComposeError` with the
        reason. A replay answers the same link.
        """
        actions = {
            "complete": LinkAction.COMPLETE,
            "reject": LinkAction.REJECT,
            "both": LinkAction.BOTH,
        }
        if action not in actions:
            raise ValueError(f"action must be complete, reject or both, not {action!r}")
        made = _compose(wit.link, self.id, actions[action], _millis(expires_in, "expires_in"))
        return Link(
            token=made.token,
            url=made.url,
            action=action,
            expires_at=made.expires_at_ms / 1000,
        )

    def _read(self, settled) -> Result:
        if isinstance(settled, Err):
            return Result(error=_rejection(settled.value))
        return self._reader.read(settled.value)

    def __str__(self) -> str:
        worker = self.id.worker_id
        uuid = worker.component_id.uuid
        digits = f"{uuid.high_bits:016x}{uuid.low_bits:016x}"
        component = "-".join(
            (digits[0:8], digits[8:12], digits[12:16], digits[16:20], digits[20:32])
        )
        return f"{component}/{worker.worker_name}/{self.id.oplog_idx}"

    def __repr__(self) -> str:
        return f"Promise({self})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Promise) and self.id == other.id

    def __hash__(self) -> int:
        return hash(str(self))


def when(fn, *args, timeout: float | None = None, retention: float | None = None) -> Promise:
    """Runs `fn(*args)` in a new worker and returns a promise of its result.

    `fn` is a function of the guest's code, a lambda or a closure (see the
    module's notes). What it returns fulfils the promise; an exception it
    raises rejects it; it may instead settle the promise itself with
    `resolve`, or return `PENDING` and leave it to be settled later.
    `timeout` (seconds) rejects the promise with `TimedOut` if it is still
    pending then; `retention` (seconds) deletes it that long after it
    settles. Raises `ComposeError` if Vow refuses, and pickling errors if
    `fn` or an argument cannot be pickled.
    """
    call = _pickle((fn, args))
    return Promise(_compose(wit.when, _own("vow-call"), call, _options(timeout, retention)))


def all(promises: list[Promise], *, timeout: float | None = None, retention: float | None = None) -> Promise:
    """A promise fulfilled once every one of `promises` has settled, with
    the list of their `Result`s in order (rejections included).

    `timeout` (seconds) rejects it with `TimedOut` if they have not all
    settled by then; `retention` as for `when`. Evaluated by Vow: no worker
    waits, but each promise gets a short `then` worker that reads its
    settlement (see the module's notes).
    """
    promises = list(promises)
    outcomes = [_compose(wit.then, p.id, _own("vow-outcome"), _NO_OPTIONS) for p in promises]
    joined = _compose(wit.all, outcomes, _options(timeout, retention))
    return Promise(joined, _Joined(tuple(p._reader for p in promises)))


def any(promises: list[Promise], *, timeout: float | None = None, retention: float | None = None) -> Promise:
    """A promise fulfilled with the value of the first of `promises` to be
    fulfilled, or rejected once all of them are rejected. Evaluated by Vow;
    `ComposeError` for an empty list."""
    promises = list(promises)
    readers = {p._reader for p in promises}
    if len(readers) > 1:
        raise TypeError("any() joins promises whose values are read alike: not an all() with another")
    reader = readers.pop() if readers else _JSON
    made = _compose(wit.any, [p.id for p in promises], _options(timeout, retention))
    return Promise(made, reader)


@dataclass(frozen=True)
class Link:
    """A completion link (see `Promise.link`). `token` is the capability
    itself: treat it as a secret. `url` is `{server}/v1/links/{token}` when
    the server knows its public URL (`vow serve --public-url`, else the
    address it listens on), or None; POST `{url}/complete` with
    `{"data": [bytes]}` settles the promise. `expires_at` is in seconds
    since the Unix epoch."""

    token: str
    url: str | None
    action: str
    expires_at: float


def create(*, timeout: float | None = None, retention: float | None = None) -> Promise:
    """A new pending promise of this worker, for someone outside to settle:
    over the REST API, with `vow promise complete`, or through a
    `Promise.link`. Its value is the payload read as JSON text. `timeout`
    rejects it after that many seconds; `retention` is how long it is kept
    once settled.
    """
    return Promise(wit.create(_options(timeout, retention)))


def current() -> Promise | None:
    """The promise the running function settles, if it was run by `when` or
    `then`: to hand on to whoever will settle it (then return `PENDING`)."""
    id = wit.current()
    return None if id is None else Promise(id)


def resolve(value_or_exception) -> bool:
    """Settles the promise of the running function (see `Promise.resolve`).

    The function's return value then settles nothing. Raises RuntimeError
    outside a function run by `when` or `then`.
    """
    promise = current()
    if promise is None:
        raise RuntimeError(
            "resolve() settles the promise of a function run by when() or then(); "
            "this invocation has none"
        )
    return promise.resolve(value_or_exception)


# The exports.


class Dispatch:
    """The exports of `vow-python:promises/dispatch`: the guest's app class
    inherits them (`class PyExample(vow_promises.Dispatch,
    py_example.PyExample)`). Vow calls them, in new workers, for `when`,
    `then` and `all`; they are not for calling by hand."""

    def vow_call(self, call: bytes) -> None:
        _settle_running(lambda: _run_call(call))

    def vow_continue(self, joined: bytes) -> None:
        _settle_running(lambda: _run_handler(joined))

    def vow_outcome(self, settled) -> bytes:
        if isinstance(settled, Ok):
            return b"\x00" + settled.value
        error = settled.value
        message = error.message.encode()
        return b"\x01" + bytes([error.kind.value]) + struct.pack("<I", len(message)) + message + error.data


@dataclass
class _Running:
    """The promise the running `vow-call` or `vow-continue` settles, and
    whether `resolve` has settled it already."""

    promise_id: golem.PromiseId | None = None
    settled: bool = False


_running = _Running()


def _settle_running(compute) -> None:
    promise = current()
    if promise is None:
        raise RuntimeError("the vow-python:promises exports run only for when() and then()")
    _running.promise_id, _running.settled = promise.id, False
    try:
        try:
            outcome = compute()
        except Exception as exc:
            if not isinstance(exc, Rejection):
                # For the worker's log: `vow worker logs` shows where it was.
                traceback.print_exc(file=sys.stderr)
            outcome = exc
        if outcome is PENDING or _running.settled:
            return
        try:
            promise.resolve(outcome)
        except (TypeError, ValueError) as exc:
            promise.resolve(Rejection(f"the result cannot be sent as JSON: {exc}"))
    finally:
        _running.promise_id, _running.settled = None, False


def _run_call(call: bytes):
    fn, args = pickle.loads(call)
    return fn(*args)


def _run_handler(joined: bytes):
    frames = _frames(joined)
    if len(frames) != 2:
        raise Failed(f"vow-continue needs the handler and the outcome, not {len(frames)} values")
    handler, reader = pickle.loads(frames[0])
    return handler(_read_outcome(frames[1], reader))


# Encodings.


@dataclass(frozen=True)
class _JsonReader:
    """Reads a payload as JSON."""

    def read(self, payload: bytes) -> Result:
        try:
            return Result(json.loads(payload))
        except ValueError as exc:
            return Result(error=Failed(f"the payload is not JSON: {exc}"))


_JSON = _JsonReader()


@dataclass(frozen=True)
class _Joined:
    """Reads the payload of an `all`: each promise's outcome, by its reader."""

    readers: tuple

    def read(self, payload: bytes) -> Result:
        try:
            frames = _frames(payload)
        except ValueError as exc:
            return Result(error=Failed(str(exc)))
        if len(frames) != len(self.readers):
            return Result(error=Failed(f"an all of {len(self.readers)} promises has {len(frames)} values"))
        return Result([_read_outcome(f, r) for f, r in zip(frames, self.readers)])


def _read_outcome(outcome: bytes, reader) -> Result:
    """Reads what `vow-outcome` made of a settlement."""
    if outcome[:1] == b"\x00":
        return reader.read(outcome[1:])
    if outcome[:1] == b"\x01" and len(outcome) >= 6:
        kind = ErrorKind(outcome[1])
        (length,) = struct.unpack_from("<I", outcome, 2)
        message = outcome[6 : 6 + length].decode(errors="replace")
        return Result(error=_REJECTIONS[kind](message, outcome[6 + length :]))
    return Result(error=Failed("an outcome that vow-outcome did not make"))


def _frames(payload: bytes) -> list[bytes]:
    """Splits the payload of Vow's `all`: each value as its length (4 bytes,
    little-endian) and its bytes."""
    frames, at = [], 0
    while at < len(payload):
        if at + 4 > len(payload):
            raise ValueError("the payload of an all ends inside a length")
        (length,) = struct.unpack_from("<I", payload, at)
        at += 4
        if at + length > len(payload):
            raise ValueError("the payload of an all ends inside a value")
        frames.append(payload[at : at + length])
        at += length
    return frames


def _encode(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _pickle(obj) -> bytes:
    return cloudpickle.dumps(obj)


def _rejection(error: wit.Error) -> Rejection:
    return _REJECTIONS[error.kind](error.message, error.data)


def _rejection_text(exc: BaseException) -> tuple[str, bytes]:
    """The message and data that reject a promise with `exc`."""
    if isinstance(exc, Rejection):
        message = exc.message if type(exc) is Rejection else str(exc)
        return message, exc.data
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__), b""


def _compose(make, *args):
    try:
        return make(*args)
    except Err as err:
        raise ComposeError(err.value) from None


def _own(function: str) -> Target:
    return Target(component=None, function=function)


def _millis(seconds: float | None, what: str) -> int | None:
    if seconds is None:
        return None
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, not {seconds}")
    return round(seconds * 1000)


def _options(timeout: float | None, retention: float | None) -> PromiseOptions:
    return PromiseOptions(
        timeout_ms=_millis(timeout, "timeout"),
        retention_ms=_millis(retention, "retention"),
        payload_type=None,
    )


_NO_OPTIONS = _options(None, None)
