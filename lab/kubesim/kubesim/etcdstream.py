"""Reading etcd's JSON-gateway watch stream (a chunked HTTP/1.1 response of JSON lines)
with a short socket timeout, so that the reader notices when it is asked to stop; http.client
cannot resume a chunked read after a timeout."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator


class Broken(Exception):
    """The connection broke or the stream ended (the watch is resumed elsewhere)."""


class ChunkedLines:
    """JSON lines of a chunked HTTP/1.1 response, read with a short timeout so that the
    reader notices `stop` (http.client cannot resume a chunked read after a timeout)."""

    def __init__(self, sock: ssl.SSLSocket, stop: threading.Event) -> None:
        self.sock, self.stop, self.buf = sock, stop, b""
        sock.settimeout(0.5)

    def _more(self) -> bool:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as err:
                raise Broken(str(err)) from err
            if not data:
                raise Broken("EOF")
            self.buf += data
            return True
        return False

    def _until(self, marker: bytes) -> bytes | None:
        while marker not in self.buf:
            if not self._more():
                return None
        head, _, self.buf = self.buf.partition(marker)
        return head

    def lines(self) -> Iterator[bytes]:
        status = self._until(b"\r\n\r\n")
        if status is None:
            return
        if b" 200 " not in status.split(b"\r\n", 1)[0]:
            raise Broken(status.split(b"\r\n", 1)[0].decode(errors="replace"))
        pending = b""
        while True:
            size_line = self._until(b"\r\n")
            if size_line is None:
                return
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                raise Broken("watch stream ended")
            while len(self.buf) < size + 2:
                if not self._more():
                    return
            pending += self.buf[:size]
            self.buf = self.buf[size + 2 :]
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                if line.strip():
                    yield line
