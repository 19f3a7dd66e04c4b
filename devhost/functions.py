"""Read a v2-model FunctionApp's functions and invoke them the way the Python worker does.

Everything here is derived from `app.get_functions()` and each binding's `get_dict_repr()`
(the same function.json shape the worker sends to the host), so the dev host works with any
FunctionApp and holds no knowledge of the application.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

log = logging.getLogger("devhost")

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER)


def _enum_value(value: Any) -> Any:
    """Binding dicts may hold StringifyEnum members; the host sees their string values."""
    return getattr(value, "value", value)


@dataclass
class FunctionSpec:
    """One indexed function: its name, trigger binding dict, and the callable to run."""

    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Callable[..., Any]
    parameters: list[str] = field(default_factory=list)
    # Set by the host: writes output bindings after a successful invocation.
    output_sink: Callable[[FunctionSpec, Invocation], Awaitable[None]] | None = None

    @property
    def trigger_type(self) -> str:
        return str(self.trigger.get("type"))

    @property
    def trigger_param(self) -> str:
        return str(self.trigger.get("name"))

    @property
    def wants_context(self) -> bool:
        """The worker passes the invocation context to a parameter named `context`."""
        return "context" in self.parameters and self.trigger_param != "context"

    def output_bindings(self) -> list[dict[str, Any]]:
        return [
            b
            for b in self.bindings
            if b is not self.trigger and _enum_value(b.get("direction")) in ("out", 1, "OUT")
        ]


def _binding_dict(binding: Any) -> dict[str, Any]:
    raw = binding.get_dict_repr() if hasattr(binding, "get_dict_repr") else dict(binding)
    return {k: _enum_value(v) for k, v in raw.items()}


_INDEXED: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def _call_get_functions(app: Any) -> list[Any]:
    """`app.get_functions()`, even if something else (a test) already indexed this app.

    FunctionApp remembers the names it has indexed, so a second call reports every function
    as a duplicate; index from a clean slate and put the app's record back afterwards.
    """
    seen = getattr(app, "functions_bindings", None)
    if not seen:
        return list(app.get_functions())
    app.functions_bindings = None
    try:
        return list(app.get_functions())
    finally:
        app.functions_bindings = seen


def _get_functions(app: Any) -> list[Any]:
    """Index each app once and reuse the result for every DevHost built on it."""
    try:
        functions = _INDEXED.get(app)
    except TypeError:  # not weak-referenceable: index every time
        return _call_get_functions(app)
    if functions is None:
        functions = _INDEXED[app] = _call_get_functions(app)
    return functions


def index_functions(app: Any) -> list[FunctionSpec]:
    """Turn `app.get_functions()` into FunctionSpecs, one per indexed function."""
    specs = []
    for function in _get_functions(app):
        trigger = function.get_trigger()
        bindings = [_binding_dict(b) for b in function.get_bindings()]
        trigger_dict = _binding_dict(trigger) if trigger is not None else {}
        # Keep the identical dict object for the trigger so output_bindings() can skip it.
        for i, b in enumerate(bindings):
            if b == trigger_dict:
                bindings[i] = trigger_dict
                break
        user_function = function.get_user_function()
        try:
            parameters = list(inspect.signature(user_function).parameters)
        except (TypeError, ValueError):
            parameters = []
        specs.append(
            FunctionSpec(
                name=function.get_function_name(),
                trigger=trigger_dict,
                bindings=bindings,
                user_function=user_function,
                parameters=parameters,
            )
        )
    return specs


class InvocationContext(func.Context):
    """The `context` argument: enough of azure.functions.Context for logging and ASGI apps."""

    def __init__(self, function_name: str, function_directory: str = "") -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local()
        self._tls.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:
        return self._tls  # type: ignore[return-value]

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


class OutValue(func.Out):
    """A `func.Out[...]` parameter; the host reads the value after a successful invocation."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass
class Invocation:
    """What happened when a function ran; returned to programmatic callers and tests."""

    function_name: str
    invocation_id: str
    succeeded: bool
    duration_ms: float
    result: Any = None
    error: BaseException | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


async def invoke(spec: FunctionSpec, trigger_value: Any) -> Invocation:
    """Call the user function with its trigger argument, context and Out parameters.

    Sync functions run in a worker thread (as the Python worker does) so a slow sync
    function does not stall the HTTP server or the pollers. Exceptions are captured, not
    raised: each trigger maps failure its own way (500, release the message, etc.), then
    calls log_invocation once it knows the outcome.
    """
    context = InvocationContext(spec.name)
    kwargs: dict[str, Any] = {spec.trigger_param: trigger_value}
    if spec.wants_context:
        kwargs["context"] = context
    outputs: dict[str, OutValue] = {}
    for binding in spec.output_bindings():
        name = binding.get("name")
        if name and name != "$return" and name in spec.parameters:
            outputs[name] = kwargs[name] = OutValue()
    for name in spec.parameters:
        # Input bindings the dev host does not emulate get None rather than a TypeError.
        if name not in kwargs and _required(spec, name):
            kwargs[name] = None

    started = time.perf_counter()
    result: Any = None
    error: BaseException | None = None
    try:
        if inspect.iscoroutinefunction(spec.user_function):
            result = await spec.user_function(**kwargs)
        else:
            result = await asyncio.to_thread(
                _call_with_context, context, spec.user_function, kwargs
            )
            if inspect.isawaitable(result):
                result = await result
    except Exception as exc:  # the function's failure is data for the trigger, not ours
        error = exc
    outcome = Invocation(
        function_name=spec.name,
        invocation_id=context.invocation_id,
        succeeded=error is None,
        duration_ms=0.0,
        result=result,
        error=error,
        outputs={k: v.get() for k, v in outputs.items()},
    )
    if outcome.succeeded and spec.output_sink is not None:
        try:
            await spec.output_sink(spec, outcome)
        except Exception as exc:  # the host fails an invocation whose outputs cannot be written
            outcome.succeeded, outcome.error = False, exc
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome


def log_invocation(spec: FunctionSpec, outcome: Invocation, detail: str = "") -> None:
    """The one summary line per invocation (never a body), plus the traceback on failure."""
    log.info(
        "Executed 'Functions.%s' (%s, trigger=%s, id=%s, duration=%.0fms)%s",
        spec.name,
        "Succeeded" if outcome.succeeded else "Failed",
        spec.trigger_type,
        outcome.invocation_id,
        outcome.duration_ms,
        f" {detail}" if detail else "",
    )
    if outcome.error is not None:
        log.error(
            "Function 'Functions.%s' (id=%s) raised %s",
            spec.name,
            outcome.invocation_id,
            type(outcome.error).__name__,
            exc_info=outcome.error,
        )


def _required(spec: FunctionSpec, name: str) -> bool:
    param = inspect.signature(spec.user_function).parameters.get(name)
    return (
        param is not None
        and param.default is inspect.Parameter.empty
        and param.kind
        in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
    )


def _call_with_context(context: InvocationContext, fn: Callable[..., Any], kwargs: Mapping) -> Any:
    """Run fn in the worker thread with the invocation id in thread-local storage."""
    context.thread_local_storage.invocation_id = context.invocation_id
    return fn(**kwargs)
