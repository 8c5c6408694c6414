"""Servers on loopback for the ``alignkit serve`` tests.

``sandbox`` serves the shipped sandbox base model (trained, so it writes words and ends its turns:
stop sequences and streaming have real text to work on); ``noisy`` serves the untrained tiny
model (near-uniform next-token distributions: sampled requests differ, and it rarely stops on its
own, so long requests stay in flight for the cancellation tests).
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

import alignkit.sandbox
from alignkit.ai.config import ServeLimits
from alignkit.ai.server import BackgroundServer, make_app
from alignkit.models.loading import load_model

BASE_MODEL = Path(alignkit.sandbox.__file__).parent / "base_model"
API_KEY = "sk-test-0123456789"


@pytest.fixture(scope="package")
def sandbox_model():
    return load_model(str(BASE_MODEL))


@pytest.fixture(scope="package")
def sandbox(sandbox_model):
    model, tokenizer = sandbox_model
    with BackgroundServer(make_app(model, tokenizer, "base", limits=ServeLimits(max_request_bytes=64 * 1024))) as srv:
        yield srv


@pytest.fixture(scope="package")
def noisy(tiny):
    model, tokenizer = tiny
    with BackgroundServer(make_app(model, tokenizer, "tiny", limits=ServeLimits(max_batch_size=8))) as srv:
        yield srv


@pytest.fixture(scope="package")
def locked(tiny):
    """A server that wants ``Authorization: Bearer API_KEY``."""
    model, tokenizer = tiny
    with BackgroundServer(make_app(model, tokenizer, "tiny", api_key=API_KEY)) as srv:
        yield srv


@pytest.fixture()
def api_key():
    return API_KEY


@pytest.fixture()
def client(sandbox):
    return openai.OpenAI(base_url=sandbox.url, api_key="unused", max_retries=0)
