"""Price table and cost estimates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from copydesk.errors import InputError
from copydesk.pricing import (
    DEFAULT_PRICES,
    PRICES_ENV,
    Price,
    estimate_cost,
    load_price_overrides,
    price_for,
    resolve_prices,
)
from copydesk.spec import ModelPrice


def test_default_table_has_the_list_prices() -> None:
    expected = {
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.00),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-3.5-turbo": (0.50, 1.50),
        "o4-mini": (1.10, 4.40),
    }
    for model, price in expected.items():
        assert DEFAULT_PRICES[model][:2] == price, model


@pytest.mark.parametrize(
    ("model", "prompt", "completion", "expected"),
    [
        ("gpt-4o-mini", 1_000_000, 1_000_000, "0.75"),
        ("gpt-4o-mini", 1234, 567, "0.0005253"),  # 1234*0.15e-6 + 567*0.60e-6
        ("gpt-4o", 2_000, 500, "0.01"),
        ("gpt-4.1", 10_000, 10_000, "0.1"),
        ("gpt-4.1-nano", 1, 0, "0.0000001"),
        ("o4-mini", 0, 1_000_000, "4.4"),
        ("gpt-3.5-turbo", 0, 0, "0"),
    ],
)
def test_estimate_cost(model: str, prompt: int, completion: int, expected: str) -> None:
    assert estimate_cost(model, prompt, completion) == float(Decimal(expected))


def test_unknown_models_are_never_guessed() -> None:
    assert estimate_cost("gpt-5-super", 100, 100) is None
    assert estimate_cost("gpt-4o-mini-turbo", 100, 100) is None  # a look-alike is not the model
    assert estimate_cost("qwen2.5:7b", 100, 100) is None
    assert price_for("claude-sonnet") is None
    # Old four-digit snapshots were priced differently from their base name.
    assert estimate_cost("gpt-3.5-turbo-1106", 100, 100) is None


def test_dated_snapshots_use_their_base_price_unless_listed() -> None:
    assert price_for("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("gpt-4.1-2025-04-14") == DEFAULT_PRICES["gpt-4.1"]
    assert price_for("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    # The first gpt-4o snapshot kept its launch price.
    assert price_for("gpt-4o-2024-05-13") == Price(5.00, 15.00)
    assert price_for("GPT-4o-Mini") == DEFAULT_PRICES["gpt-4o-mini"]


def test_the_embedded_local_model_is_free() -> None:
    assert estimate_cost("smollm2-135m-instruct", 5_000, 5_000) == 0.0


def test_overrides_win_and_add_models() -> None:
    overrides = {
        "gpt-4o-mini": (1.0, 2.0),
        "house-llama": {"input": 0, "output": 0},
        "team-model": ModelPrice(input=3.0, output=4.0),
    }
    assert estimate_cost("gpt-4o-mini", 1_000_000, 1_000_000, overrides) == 3.0
    # An override of the base name also prices its snapshots.
    assert estimate_cost("gpt-4o-mini-2024-07-18", 1_000_000, 0, overrides) == 1.0
    assert estimate_cost("house-llama", 123, 456, overrides) == 0.0
    assert estimate_cost("team-model", 500_000, 500_000, overrides) == 3.5
    assert estimate_cost("gpt-4o", 1_000_000, 0, overrides) == 2.5  # untouched


def test_cost_of_parts_adds_up_to_cost_of_the_whole() -> None:
    calls = [(41, 9), (130, 212), (410, 598), (395, 600), (402, 377)]
    parts = sum(Decimal(repr(estimate_cost("gpt-4.1-mini", p, c))) for p, c in calls)
    whole = estimate_cost("gpt-4.1-mini", sum(p for p, _ in calls), sum(c for _, c in calls))
    assert float(parts) == whole


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_token_counts_must_be_non_negative_integers(bad: object) -> None:
    with pytest.raises(ValueError):
        estimate_cost("gpt-4o-mini", bad, 0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- overrides


def test_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICES_ENV, '{"gpt-4o-mini": {"input": 0.2, "output": 0.8}, "local": {"input": 0, "output": 0}}')
    assert load_price_overrides() == {"gpt-4o-mini": Price(0.2, 0.8), "local": Price(0.0, 0.0)}


def test_no_overrides_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICES_ENV, raising=False)
    assert load_price_overrides() == {}
    monkeypatch.setenv(PRICES_ENV, "  ")
    assert load_price_overrides() == {}


def test_overrides_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"gpt-4.1": {"input": 1.5, "output": 6}}', encoding="utf-8")
    monkeypatch.setenv(PRICES_ENV, str(path))
    assert load_price_overrides() == {"gpt-4.1": Price(1.5, 6.0)}
    assert load_price_overrides(path) == {"gpt-4.1": Price(1.5, 6.0)}
    assert load_price_overrides(str(path)) == {"gpt-4.1": Price(1.5, 6.0)}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"gpt-4o": {"input": 1}', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"gpt-4o": {"input": -1, "output": 1}}', "gpt-4o: input must not be negative"),
        ('{"gpt-4o": {"input": 1}}', "gpt-4o: missing 'output'"),
        ('{"gpt-4o": {"input": 1, "output": 2, "cached": 0.5}}', "gpt-4o: unknown key 'cached'"),
        ('{"gpt-4o": {"input": "cheap", "output": 2}}', "gpt-4o: input must be a number"),
        ('{"gpt-4o": 3}', "gpt-4o: expected"),
    ],
)
def test_bad_overrides_name_the_variable_and_the_model(
    raw: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PRICES_ENV, raw)
    with pytest.raises(InputError, match=PRICES_ENV) as info:
        load_price_overrides()
    assert message in str(info.value)


def test_missing_price_file_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICES_ENV, str(tmp_path / "nope.json"))
    with pytest.raises(InputError, match="nope.json"):
        load_price_overrides()


def test_environment_wins_over_the_spec() -> None:
    spec_pricing = {"gpt-4o-mini": ModelPrice(input=9, output=9), "house": ModelPrice(input=1, output=1)}
    merged = resolve_prices(spec_pricing, env='{"gpt-4o-mini": {"input": 0.1, "output": 0.2}}')
    assert merged == {"gpt-4o-mini": Price(0.1, 0.2), "house": Price(1.0, 1.0)}
    assert resolve_prices(spec_pricing, env="") == {"gpt-4o-mini": Price(9.0, 9.0), "house": Price(1.0, 1.0)}


def test_cached_input_and_batch_prices() -> None:
    # gpt-4o-mini: 0.15 input, 0.075 cached input, 0.60 output per million
    assert estimate_cost("gpt-4o-mini", 1_000_000, 0, cached_prompt_tokens=400_000) == pytest.approx(0.6 * 0.15 + 0.4 * 0.075)
    assert estimate_cost("gpt-4o-mini", 1_000_000, 1_000_000, batch=True) == pytest.approx(0.375)  # half of 0.75
    assert estimate_cost("gpt-4o-mini", 1_000_000, 0, batch=True, cached_prompt_tokens=1_000_000) == pytest.approx(0.0375)
    # a model without a cached price charges cached tokens at the input price
    assert estimate_cost("gpt-3.5-turbo", 1_000, 0, cached_prompt_tokens=1_000) == estimate_cost("gpt-3.5-turbo", 1_000, 0)
    overrides = resolve_prices({"team": ModelPrice(input=2.0, output=4.0, cached_input=1.0, batch_input=0.5,
                                                   batch_output=3.0)}, env="")
    assert estimate_cost("team", 1_000_000, 1_000_000, overrides, batch=True) == pytest.approx(3.5)
    assert estimate_cost("team", 1_000_000, 0, overrides, cached_prompt_tokens=1_000_000) == pytest.approx(1.0)
    env = resolve_prices(env='{"team": {"input": 1, "output": 2, "batch_output": 0.1}}')
    assert estimate_cost("team", 0, 1_000_000, env, batch=True) == pytest.approx(0.1)
    with pytest.raises(InputError, match="batch_inptu"):
        load_price_overrides('{"team": {"input": 1, "output": 2, "batch_inptu": 0.1}}')
    with pytest.raises(ValueError):
        estimate_cost("gpt-4o-mini", 10, 0, cached_prompt_tokens=11)
