"""prompts: the answer prompt and template files."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
import pytest

import enclave.prompts.template as template_module
from enclave.prompts import PromptTemplate, answer_messages


@dataclass
class P:
    title: str
    section: str
    text: str


PASSAGES = [
    P("Leave policy", "Handbook > Leave", "Staff get 25 days of paid leave."),
    P("Carry-over", "", "Five unused days carry over."),
    P("Payroll FAQ", "FAQ > Pay", "Salaries are paid on the 25th."),
]


def test_answer_messages_structure() -> None:
    messages = answer_messages("How many leave days?", PASSAGES)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert all(isinstance(m["content"], str) and m["content"] for m in messages)
    system = messages[0]["content"]
    assert "cite" in system.lower() and "only the numbered passages" in system


def test_the_instructions_follow_the_question_and_ask_for_the_refusal_the_answer_path_recognises() -> None:
    from enclave.llms.abstention import ABSTENTION_TEXT, is_abstention

    user = answer_messages("How many leave days?", PASSAGES)[1]["content"]
    instructions = user[user.index("Question:"):]  # small models follow what comes last
    assert "one short sentence" in instructions and "square brackets, like [1]" in instructions
    assert f"reply exactly: {ABSTENTION_TEXT}" in instructions
    assert is_abstention(ABSTENTION_TEXT)


def test_passages_are_numbered_in_order_with_title_and_section() -> None:
    user = answer_messages("How many leave days?", PASSAGES)[1]["content"]
    assert "[1] Leave policy — Handbook > Leave" in user
    assert "[2] Carry-over\n" in user  # no section: no separator
    assert "Carry-over —" not in user
    assert "[3] Payroll FAQ — FAQ > Pay" in user
    assert "[4]" not in user
    markers = ("[1] Leave", "Staff get 25 days", "[2] Carry", "Five unused", "[3] Payroll", "the 25th")
    positions = [user.index(marker) for marker in markers]
    assert positions == sorted(positions)
    assert "Question: How many leave days?" in user
    assert user.index("the 25th") < user.index("Question:")
    assert "no passages were found" not in user


def test_no_passages_says_none_were_found() -> None:
    user = answer_messages("Who founded the company?", [])[1]["content"]
    assert "no passages were found" in user
    assert "[1] " not in user.replace("like [1].", "")
    assert "Question: Who founded the company?" in user


def test_text_is_not_escaped() -> None:
    user = answer_messages("Is a < b & c > d?", [P("T<1>", "", "x < y & z")])[1]["content"]
    assert "Is a < b & c > d?" in user
    assert "x < y & z" in user
    assert "&lt;" not in user and "&amp;" not in user


def test_markdown_template_is_returned_as_is() -> None:
    system = PromptTemplate("answer_system.md").render(ignored="value")
    assert system == system.strip()
    assert system.startswith("You are Enclave")


def test_missing_template_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError, match="no_such_prompt.j2"):
        PromptTemplate("no_such_prompt.j2").render()
    with pytest.raises(FileNotFoundError):
        PromptTemplate("missing.md").render()


def test_missing_variable_raises_undefined_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        PromptTemplate("answer_user.j2").render(passages=PASSAGES)  # no question
    with pytest.raises(jinja2.UndefinedError):
        PromptTemplate("answer_user.j2").render(question="Why?")  # no passages


def test_strict_undefined_on_a_template_of_our_own(monkeypatch: pytest.MonkeyPatch) -> None:
    sources = {"greeting.j2": "Hello {{ name }} from {{ place }}!"}
    monkeypatch.setattr(template_module, "_load", lambda name: sources[name])
    assert PromptTemplate("greeting.j2").render(name="Ada", place="Zürich") == "Hello Ada from Zürich!"
    with pytest.raises(jinja2.UndefinedError, match="place"):
        PromptTemplate("greeting.j2").render(name="Ada")
