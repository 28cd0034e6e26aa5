"""Previews at scale: estimate() sizes rows without building them, requests() shows the first
n bodies, and image parts count toward input tokens in estimate() and budget= alike."""

from __future__ import annotations

import base64
import struct
import zlib

import pandas as pd
import pytest
from helpers import MODEL, TEMPLATE, words

import valar_pandas._core.plan as plan_module
from valar_pandas import ConfigError, Price
from valar_pandas._core.budget import Budget, estimated_cost
from valar_pandas._core.estimate import Sizes, count_requests
from valar_pandas._core.images import IMAGE_LOW_TOKENS, IMAGE_MAX_TOKENS, image_tokens, tile_tokens
from valar_pandas._core.options import validate_options
from valar_pandas._core.plan import Skip, plan_requests
from valar_pandas._core.prices import estimate_input_tokens
from valar_pandas._core.wire import make_request, response_body

ODD = [
    "plain",
    "",
    'quotes " and \\ backslashes',
    "line\nbreaks\tand\r\x00NUL\x1f",
    "emoji 🙂 and ünïcödé and 漢字",
    "\u2028\u2029 separators",
    "\ue000valar-prompt\ue001",  # the splice's own sentinel, as a prompt
    "x" * 5000,
]


def _count_bodies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every request body the planner builds."""
    built = [0]
    real = plan_module.response_body

    def counting(*args, **kwargs):
        built[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "response_body", counting)
    return built


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"instructions": 'Be brief. "Quoted" and 🙂', "salt": "s1"},
        {"max_output_tokens": 16, "temperature": 0.5, "completion_window": "asap"},
        {"mode": "realtime", "salt": ""},
        {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"content": ""}}}},
    ],
)
def test_sizing_matches_the_requests_a_run_builds(options):
    opts = validate_options(model=MODEL, **options)
    image = {"type": "input_image", "image_url": "https://example.com/a.png"}
    inputs = [*ODD, Skip("gone"), ODD[0], [{"role": "user", "content": [image]}]]
    plan = plan_requests(inputs, opts)
    counted = count_requests(inputs, opts)
    assert list(counted.fingerprints()) == list(plan.requests)  # same ones, same order
    for fingerprint, request in plan.requests.items():
        assert counted.sizes[bytes.fromhex(fingerprint)] == estimate_input_tokens(request.body)
    assert (counted.rows, counted.skipped) == (len(inputs), 1)
    assert counted.to_send(set()) == Sizes.of(list(plan.requests.values()))


def test_a_prompt_json_cannot_carry_is_refused_the_same_way():
    opts = validate_options(model=MODEL)
    with pytest.raises(ConfigError, match="row 1: its prompt cannot be sent as JSON") as planned:
        plan_requests(["ok", "lone \ud800 surrogate"], opts)
    with pytest.raises(ConfigError) as counted:
        count_requests(["ok", "lone \ud800 surrogate"], opts)
    assert str(counted.value) == str(planned.value)


def test_estimate_builds_no_request_body(monkeypatch, serve):
    built = _count_bodies(monkeypatch)
    df = words(3000)
    est = df.valar.estimate(TEMPLATE, model=MODEL, max_output_tokens=10)
    assert (est.rows, est.requests, est.to_send) == (3000, 3000, 3000)
    assert built[0] <= 1  # the call's one shared prefix; a million rows hold no million bodies
    monkeypatch.undo()
    expected = Sizes.of(list(df.valar.requests(TEMPLATE, model=MODEL, max_output_tokens=10, n=None)
                             .body.map(lambda b: make_request(b)).tolist()))  # fmt: skip
    assert est.input_tokens == expected.input_tokens


def test_estimate_in_slices_counts_and_refuses_as_for_the_whole_frame():
    df = words(70_000)  # more rows than estimate() renders at once
    df.loc[3, "i"] = 5  # rows 3 and 5 render alike: one request for both
    df.loc[3, "word"] = df.loc[5, "word"]
    est = df.valar.estimate(TEMPLATE, model=MODEL, store=False)
    assert (est.rows, est.requests, est.to_send) == (70_000, 69_999, 69_999)
    bad = df.astype({"word": object})
    bad.loc[66_000, "word"] = b"\xff"
    with pytest.raises(ConfigError) as whole:
        bad.valar.run(TEMPLATE, model=MODEL, progress=None)
    with pytest.raises(ConfigError) as sliced:
        bad.valar.estimate(TEMPLATE, model=MODEL, store=False)
    assert str(sliced.value) == str(whole.value) and "row 66000" in str(sliced.value)


def test_estimate_still_counts_cache_hits_without_bodies(serve):
    _, client = serve()
    df = words(50)
    df.head(20).valar.run(TEMPLATE, model=MODEL, client=client, progress=None, salt="k")
    est = df.valar.estimate(TEMPLATE, model=MODEL, salt="k", base_url=client.base_url)
    assert (est.cache_hits, est.to_send) == (20, 30)
    assert df.valar.estimate(TEMPLATE, model=MODEL, base_url=client.base_url).cache_hits == 0


def test_requests_previews_the_first_n_rows_only(monkeypatch):
    built = _count_bodies(monkeypatch)
    df = words(5000)
    preview = df.valar.requests(TEMPLATE, model=MODEL)
    assert len(preview) == 1000 and built[0] == 1000
    assert preview.index.equals(df.index[:1000])
    assert len(df.valar.requests(TEMPLATE, model=MODEL, n=7)) == 7
    everything = df.valar.requests(TEMPLATE, model=MODEL, n=None)
    assert len(everything) == 5000
    # The preview's keys are the keys a run of the whole frame sends.
    assert preview["idempotency_key"].tolist() == everything["idempotency_key"][:1000].tolist()
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(ConfigError, match="n must be a whole number"):
            df.valar.requests(TEMPLATE, model=MODEL, n=bad)


def _png(width: int, height: int) -> str:
    """A data URL whose PNG header says width × height (the pixels are not needed)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    raw = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def _jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + app0 + sof).decode()


def test_image_tokens_follow_the_tile_rule():
    def part(url, detail=None):
        p = {"type": "input_image", "image_url": url}
        return p if detail is None else {**p, "detail": detail}

    assert image_tokens(part(_png(1024, 1024))) == tile_tokens(1024, 1024) == 765
    assert image_tokens(part(_jpeg(4096, 2048))) == 1105
    assert image_tokens(part(_png(100, 100))) == 255
    assert image_tokens(part(_png(4000, 3000), "low")) == IMAGE_LOW_TOKENS
    assert image_tokens(part("https://example.com/cat.jpg")) == IMAGE_MAX_TOKENS == 1445
    assert image_tokens(part("data:image/png;base64,not-an-image")) == IMAGE_MAX_TOKENS
    assert image_tokens({"type": "image_url", "image_url": {"url": _png(512, 512)}}) == 255


def _image_frame() -> pd.DataFrame:
    return pd.DataFrame({"caption": ["a", "b"], "url": [_png(1024, 1024), "https://x/y.png"]})


def _with_image(row):
    return [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": f"Describe: {row.caption}"},
                {"type": "input_image", "image_url": row.url},
            ],
        }
    ]


def test_estimate_counts_images_as_input_tokens():
    est = _image_frame().valar.estimate(_with_image, model=MODEL, store=False)
    text = 2 * (-(-len("Describe: a") // 4) + 4)
    assert est.input_tokens == text + 765 + 1445
    assert est.images == 2 and "images" in repr(est) and "tile rule" in repr(est)


def test_budget_counts_images_with_the_same_rule():
    body = response_body(MODEL, _with_image(pd.Series({"caption": "a", "url": "https://x"})))
    request = make_request(body)
    price = Price(1.0, 1.0)
    text = -(-len("Describe: a") // 4) + 4
    assert estimated_cost(request, price) == pytest.approx((text + 1445 + 256) / 1e6)
    budget = Budget(limit=(text + 256 + 1000) / 1e6, price=price)  # text fits, image does not
    assert budget.admit(request) is not None
