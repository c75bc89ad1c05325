"""Follow-up questions made standalone: the condense prompt, the model's reply, the keyword fallback."""

from __future__ import annotations

from enclave.prompts import condense_messages, keyword_question
from enclave.prompts.condense_prompt import condensed_line, without_sources

HISTORY = [
    {"role": "user", "content": "What does the IT security policy say about passwords?"},
    {"role": "assistant", "content": "At least 14 characters [1].\n\nSources:\n[1] it-security-policy.md (file:///x)"},
]


def test_the_prompt_holds_the_conversation_and_the_follow_up_without_source_lists():
    [message] = condense_messages("And where must they be stored?", HISTORY)
    assert message["role"] == "user"
    prompt = message["content"]
    assert "user: What does the IT security policy say about passwords?" in prompt
    assert "assistant: At least 14 characters [1]." in prompt and "Sources:" not in prompt
    assert prompt.rstrip().endswith("Follow-up question: And where must they be stored?")


def test_keywords_of_earlier_user_turns_join_the_question_most_recent_first():
    history = [{"role": "user", "content": "Tell me about the Tromsø office"},
               {"role": "assistant", "content": "It is in Storgata 14 [1]."},
               {"role": "user", "content": "What about parking permits?"}]
    assert keyword_question("And the opening hours?", history) == "And the opening hours? (parking permits Tromsø office)"
    assert keyword_question("And?", history, keywords=1) == "And? (parking)"
    assert keyword_question("Parking?", [{"role": "user", "content": "parking, please"}]) == "Parking?"
    assert keyword_question("Anything?", []) == "Anything?"


def test_the_condensed_line_is_the_first_line_without_quotes_or_a_label():
    assert condensed_line('Standalone question: "Where must passwords be stored?"\nbecause...') == (
        "Where must passwords be stored?")
    assert condensed_line("\n  \n") is None
    assert condensed_line("x" * 2000) is None
    assert without_sources("Answer [1].\n\nSources:\n[1] a.md") == "Answer [1]."
