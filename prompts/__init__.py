"""Prompt templates as files, and the code that renders them."""

from enclave.prompts.answer_prompt import answer_messages
from enclave.prompts.condense_prompt import condense_messages, keyword_question
from enclave.prompts.template import PromptTemplate

__all__ = ["PromptTemplate", "answer_messages", "condense_messages", "keyword_question"]
