"""CEL for the apiserver's admission policies, over cel-python (`celpy`).

What upstream's CEL environment gives a ValidatingAdmissionPolicy and kubesim reproduces
(staging/src/k8s.io/apiserver/pkg/admission/plugin/cel/compile.go, filter.go,
admission/plugin/cel/composition.go; the Kubernetes CEL libraries in
staging/src/k8s.io/apiserver/pkg/cel/library):

- the variables `object`, `oldObject` (null on CREATE / DELETE respectively), `request`
  (an AdmissionRequest), `params` (null: kubesim has no paramKind), `namespaceObject`
  (null for cluster-scoped requests) and `variables`;
- `variables.<name>` is evaluated lazily, once per request, in the policy's order
  (composition.go: a variable is compiled with the ones before it in scope and its value
  is cached on first use), so a variable that errors fails only the expressions using it;
- standard CEL (macros has/all/exists/exists_one/map/filter, `matches` with a regular
  expression searched anywhere in the string, `contains`, `startsWith`, `endsWith`, `size`)
  from celpy, plus the string library functions of cel-go's ext.Strings that policies use:
  `join`, `split`, `lowerAscii`, `upperAscii`, `trim`, `indexOf`, `lastIndexOf`,
  `replace`, `substring`;
- an evaluation error reads as upstream's filter.go writes it:
  `expression '<expr>' resulted in error: <cel-go's text>`, with cel-go's
  `no such key: <name>` for a missing field.

Not covered (docs/kubesim.md): type checking at policy creation (upstream reports it in
the policy's status), cost budgets, the `authorizer` variable, optional types (`?.`),
quantity/IP/URL libraries. Regular expressions are Python's `re`, not RE2: the two agree
on the patterns policies usually write (character classes, anchors, alternation).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

import celpy
from celpy import celtypes
from celpy.evaluation import base_functions

# celpy traces every evaluation step at INFO/DEBUG; an apiserver logs none of that.
for _name in ("celpy", "celtypes", "evaluation", "Evaluator", "NameContainer", "Environment"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_ENV = celpy.Environment()
_CACHE: dict[str, object] = {}
_CACHE_LOCK = threading.Lock()
_NO_MEMBER = re.compile(r"no such member in mapping: '([^']*)'")


class CelError(Exception):
    """An expression that does not compile or whose evaluation failed."""


def _s(value) -> celtypes.StringType:
    return celtypes.StringType(value)


def _join(items, sep=None) -> celtypes.StringType:
    return _s(("" if sep is None else str(sep)).join(str(i) for i in items))


def _split(text, sep, limit=None) -> celtypes.ListType:
    parts = str(text).split(str(sep)) if limit is None else str(text).split(str(sep), int(limit))
    return celtypes.ListType([_s(p) for p in parts])


def _index_of(text, sub, start=None) -> celtypes.IntType:
    return celtypes.IntType(str(text).find(str(sub), 0 if start is None else int(start)))


def _substring(text, start, end=None) -> celtypes.StringType:
    return _s(str(text)[int(start) : None if end is None else int(end)])


def _propagating(function: Callable) -> Callable:
    """An operator or function that returns the first error among its arguments, as CEL's
    evaluation does (an error is a value that flows through `==`, `!`, `size`...; only
    `||`, `&&` and `?:` may absorb one). celpy compares an error with `==` as false and
    turns `!error` into a "no matching overload"; cel-go reports the original error."""

    def call(*args):
        for arg in args:
            if isinstance(arg, celpy.CELEvalError):
                return arg
        return function(*args)

    call.__name__ = getattr(function, "__name__", "cel_function")
    return call


FUNCTIONS: dict[str, Callable] = {
    "join": _join,
    "split": _split,
    "lowerAscii": lambda t: _s(str(t).lower()),
    "upperAscii": lambda t: _s(str(t).upper()),
    "trim": lambda t: _s(str(t).strip()),
    "indexOf": _index_of,
    "lastIndexOf": lambda t, sub: celtypes.IntType(str(t).rfind(str(sub))),
    "replace": lambda t, old, new: _s(str(t).replace(str(old), str(new))),
    "substring": _substring,
}
# The logical operators may turn an error into a value (CEL's commutative || and &&).
ABSORBING = ("_||_", "_&&_", "_?_:_")
FUNCTIONS = {
    **{name: fn if name in ABSORBING else _propagating(fn) for name, fn in base_functions.items()},
    **{name: _propagating(fn) for name, fn in FUNCTIONS.items()},
}


def _text(err: Exception) -> str:
    """cel-go's wording for what celpy reports differently."""
    text = str(err.args[0]) if getattr(err, "args", None) else str(err)
    return _NO_MEMBER.sub(lambda m: f"no such key: {m.group(1)}", text)


def program(expression: str):
    """The compiled program of `expression` (cached); CelError when it does not parse."""
    with _CACHE_LOCK:
        found = _CACHE.get(expression)
    if found is not None:
        return found
    try:
        compiled = _ENV.program(_ENV.compile(expression), functions=FUNCTIONS)
    except Exception as err:  # noqa: BLE001 - celpy raises its parser's own exceptions
        first = _text(err).splitlines()[0] if _text(err) else type(err).__name__
        raise CelError(f"compilation error: {first}") from err
    with _CACHE_LOCK:
        _CACHE[expression] = compiled
    return compiled


def to_cel(value):
    """A JSON value (dict, list, str...) as CEL values; None is CEL's null."""
    return None if value is None else celpy.json_to_cel(value)


def _value(expression: str, activation: dict):
    """The value of `expression`; CelError with cel-go's text of what went wrong."""
    prg = program(expression)
    try:
        result = prg.evaluate(activation)
    except CelError:
        raise
    except Exception as err:  # noqa: BLE001 - CELEvalError and anything celpy lets escape
        raise CelError(_text(err)) from err
    if isinstance(result, celpy.CELEvalError):
        raise CelError(_text(result))
    return result


def evaluate(expression: str, activation: dict):
    """The value of `expression`, or CelError with filter.go's message."""
    try:
        return _value(expression, activation)
    except CelError as err:
        if str(err).startswith("compilation error: "):
            raise
        raise CelError(f"expression '{expression}' resulted in error: {err}") from err


class Variables(celtypes.MapType):
    """`variables`: each one evaluated on first use with the activation of the request,
    errors kept and raised again at every use (composition.go lazyVariableEval)."""

    def __init__(self, definitions: list[dict], activation: dict) -> None:
        super().__init__({})
        self.definitions = {str(v["name"]): str(v["expression"]) for v in definitions}
        self.activation = activation
        self.errors: dict[str, CelError] = {}

    def __contains__(self, key) -> bool:
        return str(key) in self.definitions

    def __getitem__(self, key):
        name = str(key)
        if name not in self.definitions:
            raise KeyError(name)
        if name in self.errors:
            raise self.errors[name]
        if not super().__contains__(_s(name)):
            try:
                value = _value(self.definitions[name], self.activation)
            except CelError as err:
                self.errors[name] = err
                raise
            super().__setitem__(_s(name), value)
        return super().__getitem__(_s(name))


def activation(  # noqa: PLR0917 - the variables upstream declares
    obj: dict | None,
    old: dict | None,
    request: dict,
    namespace: dict | None,
    definitions: list[dict],
) -> dict:
    """The variables an admission policy's expressions see for one request."""
    act = {
        "object": to_cel(obj),
        "oldObject": to_cel(old),
        "request": to_cel(request),
        "params": None,
        "namespaceObject": to_cel(namespace),
    }
    act["variables"] = Variables(definitions, act)
    return act


def truthy(value) -> bool:
    """Whether a validation passed: exactly CEL's `true` (filter.go compares to
    celtypes.True; any other value, `false` or not a bool, is a failure)."""
    return isinstance(value, celtypes.BoolType) and bool(value)


def string_or_none(value) -> str | None:
    """A CEL string as text (celpy may hand back a plain str), else None."""
    return str(value) if isinstance(value, str) else None
