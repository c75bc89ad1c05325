"""Prompt templates as files, and the code that renders them."""

from prompts.answer_prompt import answer_messages
from prompts.condense_prompt import condense_messages, keyword_question
from prompts.template import PromptTemplate

__all__ = ["PromptTemplate", "answer_messages", "condense_messages", "keyword_question"]
