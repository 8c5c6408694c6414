"""Errors in OpenAI's shape, bearer-token auth and the request limits."""

from __future__ import annotations

import httpx
import openai
import pytest

from alignkit.ai.server import api_key_from_env

ASK = [{"role": "user", "content": "hello"}]


def assert_openai_shape(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": ASK, "temperature": 5}, "temperature"),
        ({"messages": ASK, "max_tokens": 0}, "max_tokens"),
        ({"messages": ASK, "max_tokens": 100_000}, "max_tokens"),  # above --max-tokens-limit
        ({"messages": ASK, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),  # OpenAI's cap of 20
        ({"messages": ASK, "n": 9}, "n"),  # above --max-n
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": ASK, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_bad_chat_requests_are_400_naming_the_field(sandbox, payload, param):
    error = assert_openai_shape(httpx.post(f"{sandbox.url}/chat/completions", json=payload), 400, param)
    assert error["type"] == "invalid_request_error"
    assert param.split(".")[0] in error["message"]


def test_the_client_sees_the_message_not_just_a_code(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="base", messages=ASK, logprobs=True, top_logprobs=50)
    assert "top_logprobs is 50; at most 20" in str(err.value)
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-x", messages=ASK, max_tokens=2)
    assert "'gpt-x' is not served here" in str(err.value)


def test_not_json_unknown_route_and_wrong_method(sandbox):
    assert_openai_shape(
        httpx.post(f"{sandbox.url}/chat/completions", content=b"{nope", headers={"content-type": "application/json"}), 400
    )
    assert_openai_shape(httpx.post(f"{sandbox.url}/embeddings", json={"input": "x"}), 404)
    assert_openai_shape(httpx.get(f"{sandbox.url}/chat/completions"), 405)
    assert_openai_shape(httpx.post(f"{sandbox.url}/completions", json={"prompt": "x", "echo": True}), 400, "echo")
    assert_openai_shape(httpx.post(f"{sandbox.url}/completions", json={"prompt": [[99999]]}), 400, "prompt")


def test_oversized_bodies_are_refused_before_reading(sandbox):
    limit = 64 * 1024  # the fixture's --max-request-bytes
    big = {"messages": [{"role": "user", "content": "x" * (limit + 10)}]}
    error = assert_openai_shape(httpx.post(f"{sandbox.url}/chat/completions", json=big), 413)
    assert error["code"] == "request_too_large"

    def chunked():  # no Content-Length: refused while reading
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}]}'

    assert_openai_shape(httpx.post(f"{sandbox.url}/chat/completions", content=chunked()), 413)
    # The server is fine afterwards.
    ok = httpx.post(f"{sandbox.url}/chat/completions", json={"messages": ASK, "max_tokens": 2})
    assert ok.status_code == 200


def test_api_key_is_required_and_checked(locked, api_key):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": api_key}):
        error = assert_openai_shape(httpx.get(f"{locked.url}/models", headers=headers), 401)
        assert error["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=locked.url, api_key="sk-wrong", max_retries=0).models.list()
    good = openai.OpenAI(base_url=locked.url, api_key=api_key, max_retries=0)
    assert [m.id for m in good.models.list().data] == ["tiny"]
    assert good.chat.completions.create(model="tiny", messages=ASK, max_tokens=2).choices[0].message.role == "assistant"


def test_api_key_env_must_be_set(monkeypatch):
    monkeypatch.delenv("ALIGNKIT_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="ALIGNKIT_TEST_KEY"):
        api_key_from_env("ALIGNKIT_TEST_KEY")
    monkeypatch.setenv("ALIGNKIT_TEST_KEY", "  ")
    with pytest.raises(ValueError, match="not set or empty"):
        api_key_from_env("ALIGNKIT_TEST_KEY")
    monkeypatch.setenv("ALIGNKIT_TEST_KEY", "k1")
    assert api_key_from_env("ALIGNKIT_TEST_KEY") == "k1" and api_key_from_env(None) is None
