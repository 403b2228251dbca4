"""Module tests that need a real Salt master/minion or real TLS, but not root.

The PKI and process helpers live with the root tests (tests/root/modules/khm_support.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "root" / "modules"))
