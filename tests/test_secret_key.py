"""The API key stays in its Secret: not in locals a traceback shows, not in reprs; URLs checked.

A traceback rendered with its frames' locals (IPython's ``%xmode Verbose``, error trackers,
a saved notebook's outputs) shows every local variable's repr; the key must be in none of
them, yet every request on the wire must still carry it.
"""

from __future__ import annotations

import asyncio
import traceback
from pathlib import Path

import pandas as pd
import pytest

from valar_pandas import ValarClient
from valar_pandas._core.errors import ConfigError
from valar_pandas._transport.http import Http, Unreachable

KEY = "sk-live-0123456789abcdef"


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exception, its causes and contexts, shown or suppressed: trackers walk them all."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _rendered_with_locals(exc: BaseException) -> str:
    return "".join(
        "".join(traceback.TracebackException.from_exception(one, capture_locals=True).format())
        for one in _chain(exc)
    )


def _texts(obj: object) -> list[str]:
    """The repr of every attribute of an object (what a debugger's variables pane shows)."""
    names = list(getattr(obj, "__dict__", {})) + list(getattr(type(obj), "__slots__", ()))
    return [repr(getattr(obj, name, None)) for name in names]


def test_no_attribute_of_the_transport_holds_the_key() -> None:
    http = Http(ValarClient(api_key=KEY, base_url="http://127.0.0.1:9/v1"), connections=2)
    shown = _texts(http) + _texts(http._pool) + [repr(http)]
    assert not [text for text in shown if KEY in text]


def test_a_traceback_with_locals_does_not_show_the_key() -> None:
    """A server that drops every request: the failure's frames hold no header bytes."""
    requests: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    async def work() -> BaseException:
        server = await asyncio.start_server(drop, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = ValarClient(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")
        http = Http(client, connections=2)
        try:
            await http.request("GET", "/responses/resp_1")
        except Unreachable as exc:
            return exc
        finally:
            await http.close()
            server.close()
            await server.wait_closed()
        raise AssertionError("the request should have failed")

    failure = asyncio.run(work())
    rendered = _rendered_with_locals(failure)
    pool_file = str(Path("_transport", "conn", "pool.py"))
    assert pool_file in rendered and "self = " in rendered  # the pool's frames, with locals
    assert KEY not in rendered
    assert KEY.encode() not in repr(rendered).encode()
    # The header still left with the request, as the last thing made.
    assert requests and b"Authorization: Bearer " + KEY.encode() + b"\r\n" in requests[0]


def test_the_emulator_still_gets_the_key(serve) -> None:
    """The emulator answers 401 to a wrong or missing key: a run that succeeds proves it."""
    _, client = serve(api_key=KEY)
    out = pd.DataFrame({"t": ["a", "b"]}).valar.run(
        "Say {t}", model="zai-org/GLM-5.1-FP8", into="answer", progress=None, client=client
    )
    assert out["answer_error"].isna().all(), out["answer_error"].tolist()


@pytest.mark.parametrize(
    "url",
    [
        "https://api..valarhq.ai/v1",  # a doubled dot: an empty DNS label
        "https://.api.valarhq.ai/v1",
        "https://\u201capi.valarhq.ai\u201d/v1",  # smart quotes pasted from a document
        "https://api.valarhq.ai\u2019/v1",
        "https://api.valarhq.ai\x00/v1",  # a NUL
        "https://api.valarhq.ai%00/v1",
        "https://api.valarhq.ai\\evil/v1",
        "https://" + "a" * 64 + ".example/v1",  # a label over 63 characters
        "https://-api.example/v1",
        "https://api.valarhq.ai:0/v1",
        "https://[zz]/v1",
    ],
)
def test_a_base_url_the_network_would_refuse_is_a_config_error_at_once(url: str) -> None:
    with pytest.raises(ConfigError, match="base URL") as caught:
        ValarClient(api_key=KEY, base_url=url)
    assert KEY not in _rendered_with_locals(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.valarhq.ai/v1",
        "https://api.valarhq.ai./v1",
        "http://localhost:8080/v1",
        "http://127.0.0.1:1/v1",
        "http://[::1]:9000/v1",
        "https://bücher.example/v1",  # an IDNA name
        "http://my_service.internal:8000/v1",
    ],
)
def test_good_base_urls_are_kept(url: str) -> None:
    client = ValarClient(api_key=KEY, base_url=url)
    Http(client, connections=1)  # and the transport can be built for it
    assert client.base_url == url.rstrip("/")


def test_repr_of_a_half_built_client_does_not_raise() -> None:
    half = ValarClient.__new__(ValarClient)
    assert repr(half).startswith("ValarClient(")
    assert repr(Http.__new__(Http)).startswith("Http(")
    whole = ValarClient(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    assert KEY not in repr(whole) and "Secret('***')" in repr(whole)
