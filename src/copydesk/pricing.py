"""What a run costs: a price table per model and an estimate from token counts.

Prices are USD per **million** tokens, one price for prompt (input) tokens and one
for completion (output) tokens, and optionally one for prompt tokens served from the
API's prompt cache (`cached_input`, `usage.prompt_tokens_details.cached_tokens`)::

    cost = ((prompt_tokens - cached) * input + cached * cached_input
            + completion_tokens * output) / 1_000_000

A model without a `cached_input` price is charged `input` for cached tokens too (never
an under-estimate). Batch mode (the OpenAI Batch API, copydesk.batch) has prices of its
own: `batch_input` and `batch_output`, half of `input` and `output` when not given, and
cached input at half of `cached_input` (at most `batch_input`).

`estimate_cost` never guesses: a model it has no price for gives `None` (shown as
"unknown" by the CLI and left empty in the CSV), never a price borrowed from a
look-alike. The only name matching it does is for OpenAI's dated snapshots
(`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`), and snapshots that were priced
differently from their base name are listed on their own.

Where prices come from, the later winning:

1. `DEFAULT_PRICES` below;
2. the spec's `pricing:` mapping (`{model: {input, output}}`, see `spec.ModelPrice`);
3. the environment variable `COPYDESK_PRICES`: a JSON object
   `{"model": {"input": 0.15, "output": 0.6}}`, or the path of a file holding one.

`resolve_prices(spec.pricing)` merges 2 and 3 into the `overrides` that
`estimate_cost` takes. Each source may give `cached_input`, `batch_input` and
`batch_output` next to `input` and `output`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from copydesk.errors import InputError

PRICES_ENV = "COPYDESK_PRICES"


class Price(NamedTuple):
    """USD per million tokens."""

    input: float
    output: float
    #: Prompt tokens served from the prompt cache; None: charged as `input`.
    cached_input: float | None = None
    #: Batch API prices; None: half of `input` / `output`.
    batch_input: float | None = None
    batch_output: float | None = None

    def rates(self, *, batch: bool = False) -> tuple[float, float, float]:
        """(input, cached input, output) per million tokens, at batch prices when `batch`."""
        cached = self.cached_input if self.cached_input is not None else self.input
        if not batch:
            return self.input, min(cached, self.input), self.output
        batch_input = self.batch_input if self.batch_input is not None else self.input * BATCH_SHARE
        batch_output = self.batch_output if self.batch_output is not None else self.output * BATCH_SHARE
        return batch_input, min(cached * BATCH_SHARE, batch_input), batch_output


#: What batch prices are when not given: this share of the realtime price.
BATCH_SHARE = 0.5
_OPTIONAL = ("cached_input", "batch_input", "batch_output")


# List prices of OpenAI's standard tier as of writing (2025); they change. Check
# https://openai.com/api/pricing and override them in the spec (`pricing:`) or in
# COPYDESK_PRICES rather than trusting these numbers for billing.
# The third number is the cached-input price; batch prices are half of the first two.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    # The first gpt-4o snapshot kept its launch price; it must not fall back to "gpt-4o".
    "gpt-4o-2024-05-13": Price(5.00, 15.00),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o4-mini": Price(1.10, 4.40, 0.275),
    # Local models cost nothing per token. This is the name the embedded llama.cpp
    # server answers to by default (settings.llama_model_alias); a self-hosted model
    # under another name needs an override with input 0 and output 0.
    "smollm2-135m-instruct": Price(0.0, 0.0),
}

#: OpenAI's dated snapshot suffix, e.g. "-2024-07-18". Older four-digit suffixes
#: ("gpt-3.5-turbo-1106") are deliberately not matched: several were priced
#: differently from their base name.
_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")

PriceLike = Price | tuple[float, float] | Mapping[str, Any] | Any


def price_for(model: str, overrides: Mapping[str, PriceLike] | None = None) -> Price | None:
    """The price of `model`, or None when neither the overrides nor the table know it.

    An exact name wins over a snapshot's base name, and an override wins over the
    table at the same level of exactness.
    """
    table = {k.lower(): v for k, v in DEFAULT_PRICES.items()}
    if overrides:
        table.update({k.lower(): as_price(v, where=f"price of {k!r}") for k, v in overrides.items()})
    name = model.strip().lower()
    if name in table:
        return table[name]
    match = _SNAPSHOT.match(name)
    if match and match["base"] in table:
        return table[match["base"]]
    return None


def estimate_cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    overrides: Mapping[str, PriceLike] | None = None,
    *,
    cached_prompt_tokens: int = 0,
    batch: bool = False,
) -> float | None:
    """Estimated USD cost of these tokens on `model`; None when the model has no price.
    `cached_prompt_tokens` (part of `prompt_tokens`) are priced at the cached-input rate;
    `batch` prices everything at the model's batch prices.

    The arithmetic is done in decimal so that adding up many calls gives the same
    number as costing their summed tokens, up to the final conversion to float.
    """
    for name, value in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens),
                        ("cached_prompt_tokens", cached_prompt_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if cached_prompt_tokens > prompt_tokens:
        raise ValueError(f"cached_prompt_tokens ({cached_prompt_tokens}) exceeds prompt_tokens ({prompt_tokens})")
    price = price_for(model, overrides)
    if price is None:
        return None
    rate_in, rate_cached, rate_out = (Decimal(repr(r)) for r in price.rates(batch=batch))
    cost = (
        Decimal(prompt_tokens - cached_prompt_tokens) * rate_in
        + Decimal(cached_prompt_tokens) * rate_cached
        + Decimal(completion_tokens) * rate_out
    ) / Decimal(1_000_000)
    return float(cost)


def as_price(value: PriceLike, *, where: str = "price") -> Price:
    """Accept a `Price`, an `(input, output)` pair, a `{"input", "output"}` mapping or an
    object with `.input` and `.output` (such as `spec.ModelPrice`)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"input", "output", *_OPTIONAL})
        missing = sorted({"input", "output"} - set(value))
        if unknown or missing:
            problems = [f"unknown key {k!r}" for k in unknown] + [f"missing {k!r}" for k in missing]
            raise InputError(f"{where}: {', '.join(problems)} (expected {{\"input\": x, \"output\": y}}, "
                             f"optionally {', '.join(_OPTIONAL)})")
        values = {k: value[k] for k in ("input", "output", *_OPTIONAL) if k in value}
    elif isinstance(value, tuple | list) and 2 <= len(value) <= 5:
        values = dict(zip(("input", "output", *_OPTIONAL), value))
    elif hasattr(value, "input") and hasattr(value, "output"):
        values = {k: getattr(value, k, None) for k in ("input", "output", *_OPTIONAL)}
    else:
        raise InputError(f"{where}: expected {{\"input\": x, \"output\": y}}, got {value!r}")
    checked: dict[str, float | None] = {}
    for label, number in values.items():
        if number is None and label in _OPTIONAL:
            continue
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise InputError(f"{where}: {label} must be a number of USD per million tokens, got {number!r}")
        if number < 0:
            raise InputError(f"{where}: {label} must not be negative, got {number!r}")
        checked[label] = float(number)
    return Price(**checked)  # type: ignore[arg-type]


def load_price_overrides(path_or_json: str | os.PathLike[str] | None = None) -> dict[str, Price]:
    """Read price overrides: a JSON object `{model: {"input": x, "output": y}}`, given as
    text or as the path of a file; with no argument, from `COPYDESK_PRICES` (unset or
    empty: no overrides). Errors name where the prices came from and the model."""
    if path_or_json is None:
        text, source = os.environ.get(PRICES_ENV, "").strip(), PRICES_ENV
        if not text:
            return {}
    elif isinstance(path_or_json, os.PathLike):
        text, source = "", str(path_or_json)
    else:
        text, source = path_or_json.strip(), "price overrides"
        if not text:
            return {}
    if not text.startswith(("{", "[", '"')):
        # Not JSON text: the path of a JSON file.
        path = Path(text or path_or_json).expanduser()
        source = f"{PRICES_ENV} ({path})" if source == PRICES_ENV else str(path)
        text = _read(path, source).strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object {{model: {{input, output}}}}, got {type(data).__name__}")
    return {str(model): as_price(value, where=f"{source}: {model}") for model, value in data.items()}


def resolve_prices(spec_pricing: Mapping[str, PriceLike] | None = None, env: str | None = None) -> dict[str, Price]:
    """The overrides for one run: the spec's `pricing:` then `COPYDESK_PRICES` (which wins).

    `env` stands in for the environment variable's value (tests); None reads it.
    """
    merged = {model: as_price(value, where=f"pricing.{model}") for model, value in (spec_pricing or {}).items()}
    merged.update(load_price_overrides(env) if env is not None else load_price_overrides())
    return merged


def _read(path: Path, source: str | None = None) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{source or path}: neither a JSON object nor a readable JSON file: {exc}"
        ) from None
