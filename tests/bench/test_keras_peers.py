"""``python -m convdrop.bench.keras_peers`` on tiny shapes: every row is there, the rates
are rates, and a peer that is missing or fails says so instead of raising."""

from __future__ import annotations

import re

import keras
import pytest

from convdrop.bench import keras_peers as kp

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_the_report_has_every_peer_and_a_rate_for_convdrop():
    text = kp.report(calls=4, repeats=1, maps=(7, 8), shapes=((2, 7, 7, 4),))
    assert f"backend {keras.config.backend()}" in text.splitlines()[0]
    row = next(line for line in text.splitlines() if line.startswith("| convdrop.keras"))
    rates = [float(cell) for cell in re.findall(r"\| (\d\.\d{3}) ", row + " ")]
    assert len(rates) == 2 and all(0.0 < rate < 0.3 for rate in rates)
    assert "keras SpatialDropout2D" in text and "keras-cv DropBlock2D" in text
    assert "| one call, 2x7x7x4 | ms | x floor |" in text


def test_a_failing_layer_is_reported_not_raised():
    def broken(x, training=True):
        raise ValueError("Exception encountered when calling X.call().\n\nbad pool_size")

    assert kp.dropped_fraction(broken, (1, 4, 4, 1), 1) == "fails: ValueError: bad pool_size"
    times = kp.time_calls({"broken": broken}, (1, 4, 4, 1), 1)
    assert times == {"broken": "fails: ValueError: bad pool_size"}
