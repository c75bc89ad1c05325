"""Prompt templates kept as files (``prompts/templates/*.md`` / ``*.j2``), rendered with Jinja2."""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jinja2


class PromptTemplate:
    """One template file from ``prompts/templates``.

    Usage::

        system = PromptTemplate("answer_system.md").render()
        user = PromptTemplate("answer_user.j2").render(question="Who?", passages=[...])

    ``.md`` files are returned as they are; ``.j2`` files are rendered with Jinja2 (strict undefined:
    a missing variable raises ``jinja2.UndefinedError``). A missing file raises FileNotFoundError.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def render(self, **variables: Any) -> str:
        source = _load(self.name)
        if not self.name.endswith(".j2"):
            return source.strip()
        return _env().from_string(source).render(**variables).strip()


@cache
def _load(name: str) -> str:
    path = resources.files("enclave.prompts") / "templates" / name
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template named {name!r} in prompts/templates")
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)
