"""A ``cmd.run_all`` stand-in for unit tests: answers per command line, records every call.

Tests mock at this boundary only (Salt's ``cmd.run_all``), never a module's own helpers, so
they keep testing the module whatever internal runner it uses.
"""

from __future__ import annotations

from collections.abc import Callable


def ok(stdout: str = "") -> dict:
    return {"retcode": 0, "stdout": stdout, "stderr": "", "pid": 4242}


def fails(stderr: str, retcode: int = 1) -> dict:
    return {"retcode": retcode, "stdout": "", "stderr": stderr, "pid": 4242}


class RunAll:
    """``answers`` maps a command's leading words (a tuple) to a result dict, or to a
    callable taking the full command; the longest matching prefix wins. An unknown command
    fails the test: every command a module runs is one the test expected."""

    def __init__(self, answers: dict[tuple[str, ...], dict | Callable[[list[str]], dict]]):
        self.answers = answers
        self.calls: list[list[str]] = []
        self.kwargs: list[dict] = []

    def __call__(self, cmd, **kwargs) -> dict:
        assert isinstance(cmd, list), f"commands run as argument lists, not {cmd!r}"
        self.calls.append(list(cmd))
        self.kwargs.append(kwargs)
        for n in range(len(cmd), 0, -1):
            answer = self.answers.get(tuple(cmd[:n]))
            if answer is not None:
                return answer(list(cmd)) if callable(answer) else dict(answer)
        raise AssertionError(f"unexpected command {cmd}")


def tabwriter(rows: list[list[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as kubeadm sets it up (``tabwriter.NewWriter(out, 10, 4, 3, ' ',
    0)``): every cell but a line's last is padded to its column's widest cell + padding.
    A blank row (``[]``) ends a table, as ``fmt.Fprintln(w)`` does."""
    out, block = [], []

    def flush():
        cols = max((len(r) for r in block), default=0)
        widths = [
            max(minwidth, max(len(r[i]) for r in block if len(r) > i + 1) + padding)
            for i in range(cols - 1)
        ]
        out.extend(
            "".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + r[-1] + "\n"
            for r in block
        )
        block.clear()

    for row in rows:
        if row:
            block.append(row)
        else:
            flush()
            out.append("\n")
    flush()
    return "".join(out)
