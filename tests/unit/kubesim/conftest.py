"""kubesim tests import the runtime package as `kubesim` (as the machines do)."""

from __future__ import annotations

import sys
from pathlib import Path

KUBESIM = Path(__file__).resolve().parents[3] / "lab" / "kubesim"
if str(KUBESIM) not in sys.path:
    sys.path.insert(0, str(KUBESIM))
