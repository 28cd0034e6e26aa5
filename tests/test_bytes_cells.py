"""``bytes`` cells are text to a template: decoded as UTF-8 or refused, never a repr."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas import ConfigError
from valar_pandas.emulator import Latency


def test_bytes_cells_are_decoded_as_utf8(serve):
    _, client = serve(latency=Latency(median=0.02))
    df = words(6)
    df["word"] = [w.encode() for w in df["word"]]
    out = df.valar.run(TEMPLATE, client=client, **FAST)
    assert out["output"].tolist() == echo(words(6))
    bodies = df.valar.requests(TEMPLATE, model=MODEL)["body"]
    assert bodies.iloc[1]["input"][-1]["content"] == "item 1 pear"


def test_bytes_cells_that_are_not_utf8_are_refused_before_any_request(serve):
    emulator, client = serve(latency=Latency(median=0.02))
    df = pd.DataFrame({"i": [1, 2, 3], "word": [b"tea", b"caf\xe9", b"ok"]}, index=[10, 20, 30])
    message = r"column 'word', row 1 \(index 20\): bytes that are not UTF-8 .*byte 3"
    with pytest.raises(ConfigError, match=message):
        df.valar.run(TEMPLATE, client=client, **FAST)
    with pytest.raises(ConfigError, match=message):
        df.valar.requests(TEMPLATE, model=MODEL)
    with pytest.raises(ConfigError, match=message):
        df.valar.estimate(TEMPLATE, model=MODEL)
    assert emulator.stats.total_requests == 0
