"""Generators (Ollama, OpenAI-compatible, Anthropic, extractive), the route between them, and what
guards and accounts for it: the egress policy, PII redaction, the circuit breaker, audit, costs."""

from llms.anthropic_generator import AnthropicGenerator
from llms.extractive_generator import ExtractiveGenerator
from llms.generator import Attempt, Generation, GenerationRequest, Generator, GeneratorUnavailable, Usage
from llms.generator_chain import AllGeneratorsFailed, Finished, GeneratorChain, Restart, Token
from llms.ollama_generator import OllamaGenerator
from llms.openai_generator import OpenAIGenerator

__all__ = [
    "AllGeneratorsFailed", "AnthropicGenerator", "Attempt", "ExtractiveGenerator", "Finished", "Generation",
    "GenerationRequest", "Generator", "GeneratorChain", "GeneratorUnavailable", "OllamaGenerator",
    "OpenAIGenerator", "Restart", "Token", "Usage",
]
