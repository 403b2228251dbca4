"""klog-style log lines on stderr (`I1126 20:08:21.123456    4242 file.go:42] message`)."""

from __future__ import annotations

import datetime as dt
import os
import sys


def _line(level: str, source: str, message: str) -> str:
    now = dt.datetime.now()
    return f"{level}{now:%m%d %H:%M:%S.%f} {os.getpid():7d} {source}] {message}\n"


def info(message: str, source: str = "kubesim.go:1") -> None:
    sys.stderr.write(_line("I", source, message))
    sys.stderr.flush()


def warning(message: str, source: str = "kubesim.go:1") -> None:
    sys.stderr.write(_line("W", source, message))
    sys.stderr.flush()


def error(message: str, source: str = "kubesim.go:1") -> None:
    sys.stderr.write(_line("E", source, message))
    sys.stderr.flush()


def fatal(message: str, source: str = "kubesim.go:1", code: int = 1) -> None:
    sys.stderr.write(_line("F", source, message))
    sys.stderr.flush()
    os._exit(code)
