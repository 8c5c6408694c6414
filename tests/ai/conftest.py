"""A real OpenAI-compatible server (``alignkit serve``'s app) on loopback, serving the tiny model."""

from __future__ import annotations

import pytest

from alignkit.ai.config import ServeLimits
from alignkit.ai.server import BackgroundServer, make_app


@pytest.fixture(scope="module")
def server(tiny):
    model, tokenizer = tiny
    # top_logprobs may list the whole vocabulary here, so option log-probs are exact (the default cap is 20).
    app = make_app(model, tokenizer, "tiny", limits=ServeLimits(max_top_logprobs=len(tokenizer)))
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture()
def stats(server):
    """The server's request counters (a live dict: read it after the calls under test)."""
    return server.app.state.stats


@pytest.fixture(scope="module")
def vocab(tiny):
    """top_logprobs large enough to list every token, so option log-probs are exact."""
    return len(tiny[1])
