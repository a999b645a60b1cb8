"""What a context costs: a dated price table and $ per 1,000 queries.

The table is ``evals/prices.toml`` (US dollars per million *input* tokens, with its date and
source); ``--prices FILE`` adds or replaces models, ``--price-model NAME`` picks one. Output
tokens are not counted by the eval: the context only changes the input side. A model may also
carry ``output_per_million`` (optional), which ``ragtrim serve`` needs to bound a request's
worst-case cost before it calls the model, and ``cached_input_per_million`` (optional), the price of
a prompt token the upstream read from its prompt cache, which ``ragtrim serve`` charges such tokens
(without it they cost the input price). A cached price above the input price is refused: the
gateway reserves a request's worst case as if nothing were cached, so that must stay an upper bound.

>>> table = load_prices()
>>> table.price("gpt-4o").input_per_million
2.5
>>> table.price("gpt-4o").output_per_million
10.0
>>> cost_per_1k_queries(1000, 2.5)  # 1,000 input tokens a query at $2.50 per million
2.5
>>> round(cost_per_1k_queries(400.0, 0.15), 6)
0.06
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

BUNDLED_PRICES = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Price:
    """One model's input price (US dollars per million input tokens) and where it came from.

    ``output_per_million`` (US dollars per million output tokens) and ``cached_input_per_million`` (US
    dollars per million prompt tokens read from the provider's prompt cache, at most the input price)
    are optional: None when the table does not give them.
    """

    model: str
    input_per_million: float
    date: str
    source: str
    output_per_million: float | None = None
    cached_input_per_million: float | None = None


@dataclass(frozen=True)
class PriceTable:
    """Named prices and the model used when none is picked."""

    prices: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))
    default: str | None = None
    files: tuple[str, ...] = ()

    def price(self, model: str | None = None) -> Price:
        """The price of ``model`` (the table's default when None)."""
        name = model if model is not None else self.default
        if name is None:
            raise ValueError("no price model picked and the price table names no default; pass --price-model NAME")
        if name not in self.prices:
            close = difflib.get_close_matches(name, list(self.prices), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown price model {name!r}.{hint} Known: {', '.join(sorted(self.prices))}; "
                "add it with --prices FILE ([models.\"NAME\"] input_per_million = ...)"
            )
        return self.prices[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "files": list(self.files),
            "models": {name: _price_dict(p) for name, p in sorted(self.prices.items())},
        }


def _price_dict(p: Price) -> dict[str, Any]:
    out: dict[str, Any] = {"input_per_million": p.input_per_million, "date": p.date, "source": p.source}
    if p.output_per_million is not None:
        out["output_per_million"] = p.output_per_million
    if p.cached_input_per_million is not None:
        out["cached_input_per_million"] = p.cached_input_per_million
    return out


def _is_price(value: Any) -> bool:
    """True for a price in US dollars per million tokens: a finite number, 0 or more (TOML also allows nan and inf).

    >>> _is_price(2.5), _is_price(-1), _is_price(float("inf")), _is_price(True)
    (True, False, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _read_table(path: Path) -> tuple[dict[str, Price], str | None]:
    if not path.is_file():
        raise FileNotFoundError(f"price file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"could not parse price file {str(path)!r}: {exc}") from None
    models = data.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError(
            f"price file {str(path)!r} needs a [models.\"NAME\"] table with input_per_million = <USD per 1M input tokens>"
        )
    date = str(data.get("date", "undated"))
    source = str(data.get("source", str(path)))
    prices = {}
    for name, entry in models.items():
        value = entry.get("input_per_million") if isinstance(entry, Mapping) else None
        if not _is_price(value):
            raise ValueError(
                f"price file {str(path)!r}: model {name!r} needs input_per_million = a finite non-negative number "
                f"(USD per million input tokens), got {value!r}"
            )
        output = entry.get("output_per_million")
        if output is not None and not _is_price(output):
            raise ValueError(
                f"price file {str(path)!r}: model {name!r} has output_per_million = {output!r}; give a finite non-negative "
                "number (USD per million output tokens) or leave it out"
            )
        cached = _cached_price(path, name, entry.get("cached_input_per_million"), value)
        prices[name] = Price(
            model=name,
            input_per_million=float(value),
            date=str(entry.get("date", date)),
            source=str(entry.get("source", source)),
            output_per_million=float(output) if output is not None else None,
            cached_input_per_million=cached,
        )
    default = data.get("default")
    return prices, str(default) if default is not None else None


def _cached_price(path: Path, name: str, cached: Any, input_price: float) -> float | None:
    """A model's ``cached_input_per_million`` (None when left out): a price, at most its ``input_per_million``."""
    if cached is None:
        return None
    if not _is_price(cached):
        raise ValueError(
            f"price file {str(path)!r}: model {name!r} has cached_input_per_million = {cached!r}; give a finite non-negative "
            "number (USD per million prompt tokens read from the provider's prompt cache) or leave it out"
        )
    if cached > input_price:
        raise ValueError(cached_above_input(f"price file {str(path)!r}: model {name!r}", cached, input_price))
    return float(cached)


def cached_above_input(owner: str, cached: float, input_price: float) -> str:
    """The error for a cached-input price above the input price (the price table's, and the serve config's).

    >>> cached_above_input("model 'm'", 3, 2.5)  # doctest: +ELLIPSIS
    "model 'm': cached_input_per_million = 3 is above its input_per_million = 2.5; ... an upper bound ..."
    """
    return (f"{owner}: cached_input_per_million = {cached!r} is above its input_per_million = {input_price!r}; a cached "
            "prompt token costs at most an uncached one, and ragtrim serve's reservation of a request's worst case "
            "assumes nothing is cached, so it must stay an upper bound of the cost: give the provider's cached-input "
            "price (at most the input price) or leave it out (cached tokens are then charged the input price)")


def load_prices(extra: str | Path | None = None) -> PriceTable:
    """The bundled price table, with the models of ``extra`` (a TOML file) added or replacing."""
    prices, default = _read_table(BUNDLED_PRICES)
    files = [BUNDLED_PRICES.name]
    if extra is not None:
        more, more_default = _read_table(Path(extra))
        prices.update(more)
        default = more_default if more_default is not None else default
        files.append(str(extra))
    return PriceTable(prices=MappingProxyType(prices), default=default, files=tuple(files))


def model_encoding(model: str) -> str | None:
    """The tiktoken encoding ``model`` counts its tokens with, or None when tiktoken does not know the model.

    >>> model_encoding("gpt-4o"), model_encoding("gpt-4"), model_encoding("claude-3.5-sonnet")
    ('o200k_base', 'cl100k_base', None)
    """
    from optimizer.tokenizer import encoding_name

    try:
        return encoding_name(model)
    except (ValueError, ImportError):
        return None


def encoding_note(counted_with: str | None, price: Mapping[str, Any]) -> str:
    """What the report says about the tokens the $ figures multiply: the encoding that counted them and, when the
    priced model counts with another one (or one tiktoken does not know), that the figures are off and the flag to fix it.

    >>> print(encoding_note("cl100k_base", {"model": "gpt-4o", "encoding": "o200k_base"}))  # doctest: +ELLIPSIS
    Tokens counted with cl100k_base, but gpt-4o counts with o200k_base: ... pass --tokenizer o200k_base ...
    >>> encoding_note("o200k_base", {"model": "gpt-4o", "encoding": "o200k_base"})
    'Tokens counted with o200k_base, the encoding gpt-4o counts with.'
    >>> encoding_note(None, {"model": "gpt-4o"})
    ''
    """
    if not counted_with:
        return ""
    model, theirs = price.get("model", "?"), price.get("encoding")
    if theirs == counted_with:
        return f"Tokens counted with {counted_with}, the encoding {model} counts with."
    if theirs:
        return (f"Tokens counted with {counted_with}, but {model} counts with {theirs}: these $ figures multiply "
                f"{counted_with} counts by {model}'s price, so they are off by the difference between the two "
                f"encodings; pass --tokenizer {theirs} to count as {model} does (the budgets then count {theirs} "
                f"tokens too), or --price-model a model that counts with {counted_with}.")
    return (f"Tokens counted with {counted_with}; tiktoken does not know which encoding {model} counts with, so these "
            f"$ figures multiply {counted_with} counts by {model}'s price (pass --tokenizer hf:/path/to/tokenizer.json "
            "with the model's own tokenizer for its exact counts).")


def cost_per_1k_queries(input_tokens_per_query: float, usd_per_million: float) -> float:
    """US dollars for 1,000 queries of ``input_tokens_per_query`` input tokens each."""
    if input_tokens_per_query < 0 or usd_per_million < 0:
        raise ValueError(
            f"tokens and prices must be non-negative, got {input_tokens_per_query!r} tokens at ${usd_per_million!r}/M"
        )
    return input_tokens_per_query * 1000 * usd_per_million / 1_000_000
