"""Generators (Ollama, OpenAI-compatible, Anthropic, extractive), the route between them, and what
guards and accounts for it: the egress policy and its guard, PII redaction, the circuit breaker and its
guard, audit, usage and costs.

Usage::

    from enclave.llms import BreakerGuard, CircuitBreaker, ExtractiveGenerator, FallbackRouter, OllamaGenerator

    router = FallbackRouter([BreakerGuard(OllamaGenerator("llama3.1:8b"), CircuitBreaker()),
                             ExtractiveGenerator()])
    generation = router.run(request)     # request: enclave.contracts.GenerationRequest

Names load on first use (the model clients take seconds to import).
"""

from typing import TYPE_CHECKING

from enclave.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from enclave.llms.abstention import ABSTENTION_TEXT, AbstentionGate, is_abstention
    from enclave.llms.anthropic_generator import AnthropicGenerator
    from enclave.llms.audit_log import AuditLog, AuditRecord
    from enclave.llms.breaker_guard import BreakerGuard, GeneratorSkipped
    from enclave.llms.circuit_breaker import CircuitBreaker
    from enclave.llms.cost_table import CostTable, TokenPrice
    from enclave.llms.egress_guard import EgressGuard, EgressRefused
    from enclave.llms.egress_policy import EgressDecision, EgressPolicy
    from enclave.llms.extractive_generator import ExtractiveGenerator
    from enclave.llms.fallback_router import (
        AllGeneratorsFailed,
        FallbackRouter,
        Finished,
        Restart,
        RouteEvent,
        RouteObserver,
        Token,
    )
    from enclave.llms.generator import WrappedGenerator
    from enclave.llms.ollama_generator import OllamaGenerator
    from enclave.llms.openai_generator import OpenAIGenerator
    from enclave.llms.pii_redactor import PiiRedactor, Redaction
    from enclave.llms.question_condenser import CondensedQuestion, QuestionCondenser
    from enclave.llms.usage_log import UsageLog, UsageObserver, UsageRecord

__all__ = ["ABSTENTION_TEXT", "AbstentionGate", "AllGeneratorsFailed", "AnthropicGenerator", "AuditLog", "AuditRecord",
    "BreakerGuard",
    "CircuitBreaker", "CondensedQuestion", "CostTable", "EgressDecision", "EgressGuard", "EgressPolicy",
    "EgressRefused", "ExtractiveGenerator", "FallbackRouter", "Finished", "GeneratorSkipped", "OllamaGenerator",
    "OpenAIGenerator", "PiiRedactor", "QuestionCondenser", "Redaction", "Restart", "RouteEvent", "RouteObserver",
    "Token", "TokenPrice", "UsageLog", "UsageObserver", "UsageRecord", "WrappedGenerator", "is_abstention"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "enclave.llms.abstention": ["ABSTENTION_TEXT", "AbstentionGate", "is_abstention"],
    "enclave.llms.anthropic_generator": ["AnthropicGenerator"],
    "enclave.llms.audit_log": ["AuditLog", "AuditRecord"],
    "enclave.llms.breaker_guard": ["BreakerGuard", "GeneratorSkipped"],
    "enclave.llms.circuit_breaker": ["CircuitBreaker"],
    "enclave.llms.cost_table": ["CostTable", "TokenPrice"],
    "enclave.llms.egress_guard": ["EgressGuard", "EgressRefused"],
    "enclave.llms.egress_policy": ["EgressDecision", "EgressPolicy"],
    "enclave.llms.extractive_generator": ["ExtractiveGenerator"],
    "enclave.llms.generator": ["WrappedGenerator"],
    "enclave.llms.fallback_router": [
        "AllGeneratorsFailed", "FallbackRouter", "Finished", "Restart", "RouteEvent", "RouteObserver", "Token",
    ],
    "enclave.llms.ollama_generator": ["OllamaGenerator"],
    "enclave.llms.openai_generator": ["OpenAIGenerator"],
    "enclave.llms.pii_redactor": ["PiiRedactor", "Redaction"],
    "enclave.llms.question_condenser": ["CondensedQuestion", "QuestionCondenser"],
    "enclave.llms.usage_log": ["UsageLog", "UsageObserver", "UsageRecord"],
})
