"""The power switch's report of when the power went (``_utils/chaos_power.switch``), run
with real child processes standing in for a site's switch command."""

import sys
import time

import pytest

from tests.unit.modules.khm_load import load

chaos_power = load("_utils", "chaos_power")


def _model(script: str) -> dict:
    return {"chaos": {"power_off": [sys.executable, "-c", script, "{node}"], "power_on": []}}


def test_a_switch_that_bounds_the_power_off_gives_its_window():
    out = chaos_power.switch(
        _model('print("booting"); print(\'{"at": 100.5, "until": 100.54, "node": "x"}\')'),
        "off",
        "cp-1",
    )
    assert (out["at"], out["until"], out["node"]) == (100.5, 100.54, "cp-1")


def test_a_switch_that_names_an_instant_gives_a_window_of_no_width():
    out = chaos_power.switch(_model('print(\'{"at": 100.5}\'); print("[]")'), "off", "cp-1")
    assert out["at"] == out["until"] == 100.5


def test_a_silent_switch_gives_its_own_start_and_return():
    before = time.time()
    out = chaos_power.switch(_model("import time; time.sleep(0.2)"), "off", "cp-1")
    assert before <= out["at"] < out["until"] <= out["returned"] <= time.time()
    assert out["until"] - out["at"] >= 0.2


def test_a_failing_switch_is_an_error_that_does_not_quote_its_command():
    with pytest.raises(RuntimeError, match="exited 3") as err:
        chaos_power.switch(_model("import sys; sys.exit(3)  # secret"), "off", "cp-1")
    assert "secret" not in str(err.value)
