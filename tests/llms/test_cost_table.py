"""llms.cost_table: token prices per 1M tokens, local hardware per hour."""

from __future__ import annotations

import pytest

from enclave.llms.cost_table import CostTable, TokenPrice

TABLE = CostTable(models={"gpt-4o-mini": TokenPrice(0.15, 0.60), "claude-sonnet": TokenPrice(3.0, 15.0)},
                  local_hourly={"ollama": 1.20})


def test_external_answers_are_priced_per_token():
    # 1,200 in at $0.15/M + 300 out at $0.60/M = 0.00018 + 0.00018
    assert TABLE.cost("openai", "gpt-4o-mini", "external", 1200, 300, 2.0) == pytest.approx(0.00036)
    assert TABLE.cost("anthropic", "claude-sonnet", "external", 1_000_000, 0, 9.0) == pytest.approx(3.0)


def test_local_answers_are_priced_by_their_duration():
    assert TABLE.cost("ollama", "llama3.1:8b", "local", 5000, 900, 6.0) == pytest.approx(1.20 * 6 / 3600)
    assert TABLE.cost("extractive", "extractive", "local", 0, 0, 0.2) == 0.0


def test_what_the_same_tokens_would_cost_elsewhere_and_unpriced_models():
    assert TABLE.tokens_cost("claude-sonnet", 1200, 300) == pytest.approx((1200 * 3 + 300 * 15) / 1e6)
    assert TABLE.tokens_cost("mystery", 1200, 300) == 0.0
    assert TABLE.unpriced("mystery", "external") and not TABLE.unpriced("mystery", "local")
    assert not TABLE.unpriced("gpt-4o-mini", "external")
