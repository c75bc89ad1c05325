"""Fixtures for the llms/ tests: a stand-in Ollama server, an address nothing listens on, passages."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from standins.ollama_server import OllamaStandIn

from enclave.contracts import GenerationRequest
from enclave.prompts import answer_messages

MODEL = "llama3.1:8b"


@dataclass(frozen=True)
class FakePassage:
    """What ``prompts.answer_prompt.Passage`` asks for, and nothing else."""

    title: str
    section: str
    text: str


PASSAGES = [
    FakePassage(
        "HX-400 Pump Manual",
        "Overview",
        "The HX-400 is a centrifugal pump rated for 400 litres per minute. It is made of stainless steel.",
    ),
    FakePassage(
        "HX-400 Pump Manual",
        "Maintenance",
        "Replace the impeller seal every 2,000 operating hours. Drain the pump before servicing it.",
    ),
]


def build_request(question: str, passages=PASSAGES) -> GenerationRequest:
    """A request as the answering flow builds it: messages rendered by ``prompts.answer_messages``."""
    passages = list(passages)
    return GenerationRequest(question=question, passages=passages, messages=answer_messages(question, passages))


@pytest.fixture
def make_request():
    """``make_request(question, passages=PASSAGES)`` builds a GenerationRequest (passages: FakePassage)."""
    return build_request


@pytest.fixture
def passage():
    """The FakePassage class: ``passage(title, section, text)``."""
    return FakePassage


@pytest.fixture
def ollama_server() -> Iterator[OllamaStandIn]:
    """A fresh stand-in Ollama serving ``llama3.1:8b``, stopped after the test."""
    with OllamaStandIn(models=[MODEL]) as server:
        yield server


@pytest.fixture
def dead_host() -> str:
    """``http://127.0.0.1:PORT`` where nothing listens (a port just bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def request_hx400() -> GenerationRequest:
    """A question whose answer is the first sentence of passage [1]."""
    return build_request("What is the HX-400 rated for?")
