"""An ordinary workload container: says which image it stands for, then idles until SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    print(f"kubesim workload for image {os.environ.get('KUBESIM_WORKLOAD_IMAGE', '?')}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
