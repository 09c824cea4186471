import pytest
import yaml

from batch_pipeline.costs.prices import DEFAULT_PRICES, ModelPrice, estimate_cost, price_for, price_table


@pytest.mark.parametrize(
    "model, entry",
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1", "gpt-4.1"),
        ("llama-3", None),
    ],
)
def test_longest_prefix_match(model, entry):
    assert price_for(model, DEFAULT_PRICES) == (DEFAULT_PRICES[entry] if entry else None)


def test_cost_counts_cached_input_at_its_own_rate():
    price = ModelPrice(input=2.0, cached_input=0.5, output=8.0)
    assert estimate_cost(price, 1_000_000, 400_000, 500_000) == pytest.approx(0.6 * 2 + 0.4 * 0.5 + 0.5 * 8)
    assert estimate_cost(None, 10, 0, 10) is None


def test_override_file_extends_and_replaces(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump({"gpt-4o": {"input": 1, "output": 2}, "my-model": {"input": 0.1, "output": 0.2}}))
    monkeypatch.setenv("BATCH_PIPELINE_PRICES", str(path))
    table = price_table()
    assert table["gpt-4o"] == ModelPrice(input=1, output=2)
    assert table["my-model"].output == 0.2
    assert table["gpt-4o-mini"] == DEFAULT_PRICES["gpt-4o-mini"]


def test_batch_api_tokens_cost_the_batch_price_of_their_model_and_online_where_it_has_none():
    price = ModelPrice(input=2.0, cached_input=0.5, output=8.0, batch_input=1.0, batch_output=4.0)
    assert estimate_cost(price, 1_000_000, 0, 1_000_000, "batch") == pytest.approx(5.0)
    assert estimate_cost(price, 1_000_000, 0, 1_000_000, "online") == pytest.approx(10.0)
    no_batch_price = ModelPrice(input=2.0, output=8.0)
    assert estimate_cost(no_batch_price, 1_000_000, 0, 1_000_000, "batch") == pytest.approx(10.0)
    mini = DEFAULT_PRICES["gpt-4o-mini"]
    assert (mini.batch_input, mini.batch_output) == (0.075, 0.30)  # per model, from the provider's table


def test_cached_input_in_the_batch_api_costs_its_own_price_or_the_batch_input_price():
    price = ModelPrice(input=2.0, output=8.0, batch_input=1.0, batch_output=4.0)
    assert estimate_cost(price, 1_000_000, 1_000_000, 0, "batch") == pytest.approx(1.0)
    price = price.model_copy(update={"batch_cached_input": 0.25})
    assert estimate_cost(price, 1_000_000, 1_000_000, 0, "batch") == pytest.approx(0.25)
