"""What an answer cost: external models priced per token, local generators per second of hardware time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenPrice:
    """US dollars per 1,000,000 tokens sent (``input``) and received (``output``)."""

    input: float
    output: float


@dataclass(frozen=True)
class CostTable:
    """Prices for external models and the hourly cost of local generators' hardware.

    Usage::

        table = CostTable(models={"gpt-4o-mini": TokenPrice(0.15, 0.60)}, local_hourly={"ollama": 1.20})
        table.cost("openai", "gpt-4o-mini", "external", tokens_in=1200, tokens_out=300, seconds=2.1)  # 0.00036
        table.cost("ollama", "llama3.1:8b", "local", tokens_in=1200, tokens_out=300, seconds=6.0)     # 0.002
        table.tokens_cost("gpt-4o-mini", 1200, 300)     # what the same tokens cost on that model

    An external model without a price costs 0 and is listed by
    [unpriced][enclave.llms.cost_table.CostTable.unpriced] (so a report can say so); a local generator
    without an hourly cost costs 0. Amounts are US dollars.
    """

    models: Mapping[str, TokenPrice] = field(default_factory=dict)
    local_hourly: Mapping[str, float] = field(default_factory=dict)

    def tokens_cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        """Dollars for ``tokens_in`` + ``tokens_out`` on ``model`` at its price (0 if unpriced)."""
        price = self.models.get(model)
        if price is None:
            return 0.0
        return (tokens_in * price.input + tokens_out * price.output) / 1_000_000

    def cost(self, generator: str, model: str, locality: str, tokens_in: int, tokens_out: int, seconds: float) -> float:
        """One answer's cost: per token for an external generator, ``seconds`` of the local generator's
        hourly hardware cost for a local one."""
        if locality == "external":
            return self.tokens_cost(model, tokens_in, tokens_out)
        return self.local_hourly.get(generator, 0.0) * max(seconds, 0.0) / 3600

    def unpriced(self, model: str, locality: str) -> bool:
        """Whether ``model`` is external and has no price here (its tokens are then counted at 0 dollars)."""
        return locality == "external" and model not in self.models
