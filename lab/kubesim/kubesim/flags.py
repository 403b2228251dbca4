"""Go-style `--flag=value` / `--flag value` parsing for the component stand-ins."""

from __future__ import annotations

import re


def parse(argv: list[str], bools: set[str] = frozenset()) -> tuple[dict[str, str], list[str]]:
    """Flags as a dict (last one wins, like pflag) and the positional arguments."""
    flags: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i + 1 :]
            break
        if arg.startswith("-") and len(arg) > 1:
            name = arg.lstrip("-")
            if "=" in name:
                name, value = name.split("=", 1)
            elif name in bools:
                value = "true"
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                value = ""
            flags[name] = value
        else:
            rest.append(arg)
        i += 1
    return flags, rest


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go time.Duration string ("15s", "1m30s", "500ms", "0") in seconds."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f'time: invalid duration "{text}"')
    return total


def go_duration(seconds: float) -> str:
    """Format like Go's Duration.String() for whole and fractional seconds (e.g. 1m0s, 2.5s)."""
    if seconds == 0:
        return "0s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += f"{int(h)}h"
    if h or m:
        out += f"{int(m)}m"
    out += (f"{s:.9f}".rstrip("0").rstrip(".") if s != int(s) else str(int(s))) + "s"
    return out


def as_bool(text: str | None, default: bool = False) -> bool:
    if text is None:
        return default
    return text.lower() in ("true", "1", "t", "yes", "")


class FlagError(Exception):
    """A command line pflag refuses; the message is pflag's."""


_BOOL_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_BOOL_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_strict(
    argv: list[str], known: set[str], bools: set[str], shorthands: dict[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Parse as spf13/pflag does for a command's FlagSet: an undefined flag is an error.

    `--name=value` and `--name value`; a boolean takes `--name` alone or `--name=false`
    (never the next argument); `-x` shorthands; `--` ends the flags. Errors carry pflag's
    texts (flag.go: "unknown flag: --%s", "unknown shorthand flag: %q in -%s",
    "flag needs an argument: %s", strconv.ParseBool's "invalid argument").
    """
    shorthands = shorthands or {}
    flags: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            continue
        if arg.startswith("--"):
            body = arg[2:]
            name, eq, value = body.partition("=")
            shown = f"--{name}"
            if name not in known:
                raise FlagError(f"unknown flag: --{name}")
        else:
            body = arg[1:]
            short, tail = body[0], body[1:]
            if short not in shorthands:
                raise FlagError(f"unknown shorthand flag: '{short}' in -{body}")
            name, shown = shorthands[short], f"-{short}"
            # -v=2 and -v2 both carry the value (pflag parseSingleShortArg)
            eq, value = ("=", tail[1:]) if tail.startswith("=") else ("=" if tail else "", tail)
        if name in bools:
            if not eq:
                value = "true"
            elif value not in _BOOL_TRUE | _BOOL_FALSE:
                raise FlagError(
                    f'invalid argument "{value}" for "{shown}" flag: strconv.ParseBool: '
                    f'parsing "{value}": invalid syntax'
                )
        elif not eq:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: {shown}")
            value = argv[i]
            i += 1
        flags[name] = value
    return flags, rest
