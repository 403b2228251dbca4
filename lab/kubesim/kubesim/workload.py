"""An ordinary workload container: says which image it stands for, then idles until SIGTERM
(the pause image with -v prints its version and exits, as pause.c does)."""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    image = os.environ.get("KUBESIM_WORKLOAD_IMAGE", "?")
    if image.rpartition(":")[0].endswith("/pause") and "-v" in sys.argv[1:]:
        # pause.c: -v prints the version and exits 0 (kubeadm's upgrade-health-check Job)
        print(f"pause.c {image.rpartition(':')[2]}", flush=True)
        return 0
    print(f"kubesim workload for image {image}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
