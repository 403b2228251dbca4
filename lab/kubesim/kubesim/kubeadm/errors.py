"""How kubeadm fails: a message on stderr and exit code 1 (cmd/kubeadm/app/util/error.go)."""

from __future__ import annotations


class KubeadmError(Exception):
    """Printed as is, followed by kubeadm's hint, exit status 1."""

    def __init__(self, message: str, phase: str | None = None, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.phase = phase
        self.code = code

    def render(self) -> str:
        text = self.message
        if self.phase:
            text = f"error execution phase {self.phase}: {text}"
        return text + "\nTo see the stack trace of this error execute with --v=5 or higher"
