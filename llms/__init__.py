"""Generators (Ollama, extractive) and the chain that routes between them."""

from llms.extractive_generator import ExtractiveGenerator
from llms.generator import Attempt, Generation, GenerationRequest, Generator, GeneratorUnavailable
from llms.generator_chain import AllGeneratorsFailed, GeneratorChain
from llms.ollama_generator import OllamaGenerator

__all__ = [
    "AllGeneratorsFailed", "Attempt", "ExtractiveGenerator", "Generation", "GenerationRequest", "Generator",
    "GeneratorChain", "GeneratorUnavailable", "OllamaGenerator",
]
