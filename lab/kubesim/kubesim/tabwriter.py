"""Go's text/tabwriter (flags 0, left-aligned), so tables come out byte-for-byte like upstream.

kubeadm prints its tables with `tabwriter.NewWriter(out, 10, 4, 3, ' ', 0)`
(cmd/kubeadm/app/cmd/certs.go, upgrade/plan.go), crictl with `(20, 1, 3, ' ', 0)`
(cri-tools cmd/crictl/display.go) and kubectl's printers with `(0, 8, 3, ' ', 0)`
(k8s.io/cli-runtime/pkg/printers/tabwriter.go). The algorithm below is Go's `format`:
a column block is a run of consecutive lines that have a tab-terminated cell in that
column; its width is the widest cell plus padding, at least minwidth. The text after a
line's last tab is not a cell and is written as is.
"""

from __future__ import annotations


def render(text: str, minwidth: int, padding: int) -> str:
    """Format `text` (lines of tab-separated cells) the way Go's tabwriter flushes it."""
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                if j < len(cells) - 1 and j < len(widths):
                    parts.append(cell.ljust(widths[j]))
                else:
                    parts.append(cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1:
                cells = lines[this]
                if column >= len(cells) - 1:
                    break
                width = max(width, len(cells[column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out)


def table(rows: list[list[str]], minwidth: int, padding: int) -> str:
    """Rows joined with tabs, one per line (fmt.Fprintln(w, strings.Join(row, "\\t")))."""
    return render("\n".join("\t".join(r) for r in rows) + "\n", minwidth, padding)
