"""Prices in integer micro-dollars, from the dated table (``evals/prices.toml``) or the config.

A price of $X per million tokens is exactly X micro-dollars per token, so a cost is
``tokens * X`` micro-dollars; it is computed with exact decimals and rounded *up* to a whole
micro-dollar (a request never costs less than it should). No floats touch money.

Prompt tokens the upstream read from its prompt cache (``cached_tokens``, OpenAI's
``usage.prompt_tokens_details.cached_tokens``) cost ``cached_input_per_million`` when the model has
one, else the full input price. A cached price is never above the input price (checked where prices
are read), so the worst case a request reserves, which assumes no cache, stays an upper bound.

Prompt tokens the upstream wrote to its prompt cache (``cache_write_tokens``, Anthropic's
``usage.cache_creation_input_tokens``) cost ``cache_write_per_million`` when the model has one (Anthropic
bills 1.25x the input price), else the input price. Of them, those written to the 1-hour cache
(``cache_write_1h_tokens``, Anthropic's ``usage.cache_creation.ephemeral_1h_input_tokens``) cost
``cache_write_1h_per_million`` (Anthropic bills 2x the input price; :func:`model_price` gives that default when a model
prices its cache writes), else the 5-minute write price. These prices may be above the input price, so a reservation
prices its whole prompt at the highest of them (:meth:`ModelPrice.worst_micro`); the 1-hour one only for a request
that asks for a 1-hour cache (:meth:`ModelPrice.with_1h_writes`).

>>> claude = ModelPrice(model="claude", input_per_million=Decimal("3"), output_per_million=Decimal("15"), date="d",
...                     cached_input_per_million=Decimal("0.3"), cache_write_per_million=Decimal("3.75"),
...                     cache_write_1h_per_million=Decimal("6"))
>>> claude.cost_micro(prompt_tokens=1000, completion_tokens=10, cached_tokens=600, cache_write_tokens=300)  # 100*3 + 600*0.3 + 300*3.75 + 150
1755
>>> claude.cost_micro(prompt_tokens=1000, completion_tokens=10, cached_tokens=600, cache_write_tokens=300,
...                   cache_write_1h_tokens=100)  # 100*3 + 600*0.3 + 200*3.75 + 100*6 + 150
1980
>>> claude.worst_micro(prompt_tokens=1000, completion_tokens=10), claude.with_1h_writes().worst_micro(prompt_tokens=1000, completion_tokens=10)
(3900, 6150)

>>> p = ModelPrice(model="gpt-4o", input_per_million=Decimal("2.5"), output_per_million=Decimal("10"), date="2025-06-01")
>>> p.cost_micro(prompt_tokens=1000, completion_tokens=100)
3500
>>> p.cost_micro(prompt_tokens=1, completion_tokens=0)  # 2.5 micro-dollars, rounded up
3
>>> cached = ModelPrice(model="gpt-4o", input_per_million=Decimal("2.5"), output_per_million=Decimal("10"), date="2025-06-01",
...                     cached_input_per_million=Decimal("1.25"))
>>> cached.cost_micro(prompt_tokens=1000, completion_tokens=100, cached_tokens=600)  # 400 * 2.5 + 600 * 1.25 + 100 * 10
2750
>>> p.saved_micro(tokens_not_sent=1000)  # input tokens the optimizer did not send
2500
>>> p.ref
'gpt-4o@2025-06-01'
>>> format_usd(1234567)
'$1.234567'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

from ragtrim.serve.config import ModelConfig


@dataclass(frozen=True)
class ModelPrice:
    """Input and output prices of one model, in US dollars per million tokens, as exact decimals.

    ``cached_input_per_million`` is the price of a prompt token read from the upstream's prompt cache
    (None: the input price); ``cache_write_per_million`` of one written to it (None: the input price), and
    ``cache_write_1h_per_million`` of one written to its 1-hour cache (None: the 5-minute write price).
    ``writes_1h``: the request this price reserves for asks for a 1-hour cache (:meth:`with_1h_writes`).
    """

    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    date: str
    source: str = ""
    cached_input_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None
    cache_write_1h_per_million: Decimal | None = None
    writes_1h: bool = False

    @property
    def write_price(self) -> Decimal:
        """The price of a prompt token written to the 5-minute cache."""
        return self.cache_write_per_million if self.cache_write_per_million is not None else self.input_per_million

    @property
    def write_1h_price(self) -> Decimal:
        """The price of a prompt token written to the 1-hour cache."""
        return self.cache_write_1h_per_million if self.cache_write_1h_per_million is not None else self.write_price

    @property
    def top_input_per_million(self) -> Decimal:
        """The most a prompt token can cost: the input price, or a cache-write price when that is higher (the 1-hour
        one only when :attr:`writes_1h`)."""
        return max(self.input_per_million, self.write_price, *([self.write_1h_price] if self.writes_1h else []))

    def with_1h_writes(self) -> ModelPrice:
        """This price for a request that asks for a 1-hour cache: its worst case prices a prompt token at the 1-hour write
        price too (charged the same)."""
        return replace(self, writes_1h=True)

    @property
    def ref(self) -> str:
        """Which price a ledger row used: ``model@date``."""
        return f"{self.model}@{self.date}"

    def cost_micro(self, *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0,
                   cache_write_1h_tokens: int = 0) -> int:
        """Cost in micro-dollars (rounded up); ``cached_tokens`` of the ``prompt_tokens`` at the cached-input price,
        ``cache_write_tokens`` of them at the cache-write price, of which ``cache_write_1h_tokens`` at the 1-hour one."""
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError(f"token counts must be >= 0, got {prompt_tokens!r} prompt and {completion_tokens!r} completion")
        if not 0 <= cached_tokens <= prompt_tokens or not 0 <= cache_write_tokens <= prompt_tokens - cached_tokens:
            raise ValueError(f"cached_tokens and cache_write_tokens must be from 0 to the {prompt_tokens} prompt tokens they "
                             f"are part of, got {cached_tokens!r} and {cache_write_tokens!r}")
        if not 0 <= cache_write_1h_tokens <= cache_write_tokens:
            raise ValueError(f"cache_write_1h_tokens must be from 0 to the {cache_write_tokens} cache_write_tokens they are part "
                             f"of, got {cache_write_1h_tokens!r}")
        cached_price = self.cached_input_per_million if self.cached_input_per_million is not None else self.input_per_million
        plain = prompt_tokens - cached_tokens - cache_write_tokens
        exact = (Decimal(plain) * self.input_per_million + Decimal(cached_tokens) * cached_price
                 + Decimal(cache_write_tokens - cache_write_1h_tokens) * self.write_price
                 + Decimal(cache_write_1h_tokens) * self.write_1h_price + Decimal(completion_tokens) * self.output_per_million)
        return int(math.ceil(exact))

    def worst_micro(self, *, prompt_tokens: int, completion_tokens: int) -> int:
        """The most ``prompt_tokens`` and ``completion_tokens`` can cost: every prompt token at
        :attr:`top_input_per_million` (all of it written to the cache, when that costs more)."""
        return int(math.ceil(Decimal(prompt_tokens) * self.top_input_per_million + Decimal(completion_tokens) * self.output_per_million))

    def saved_micro(self, *, tokens_not_sent: int) -> int:
        """Input cost avoided by not sending ``tokens_not_sent`` tokens (rounded down)."""
        return int(math.floor(Decimal(max(0, tokens_not_sent)) * self.input_per_million))

    def max_prompt_tokens(self, micro_available: int, completion_tokens: int) -> int | None:
        """The most prompt tokens affordable with ``micro_available`` and ``completion_tokens`` out (None: unbounded)."""
        left = Decimal(micro_available) - Decimal(completion_tokens) * self.output_per_million
        if left < 0:
            return -1
        if self.top_input_per_million == 0:
            return None
        return int(left / self.top_input_per_million)


def _dec(value: float | int) -> Decimal:
    return Decimal(repr(float(value)))


def _dec_or_none(value: float | int | None) -> Decimal | None:
    return _dec(value) if value is not None else None


def _write_1h_price(model: ModelConfig) -> Decimal | None:
    """An inline model's 1-hour cache-write price: its ``cache_write_1h_per_million``; else, when it prices cache writes
    (``cache_write_per_million``), twice its input price (what Anthropic bills); else None (the 5-minute write price,
    the input price when it has none either).

    >>> from ragtrim.serve.config import ModelConfig
    >>> _write_1h_price(ModelConfig("c", input_per_million=3.0, output_per_million=15.0, cache_write_per_million=3.75))
    Decimal('6.0')
    >>> _write_1h_price(ModelConfig("c", input_per_million=3.0, output_per_million=15.0)) is None
    True
    """
    if model.cache_write_1h_per_million is not None:
        return _dec(model.cache_write_1h_per_million)
    if model.cache_write_per_million is not None and model.input_per_million is not None:
        return 2 * _dec(model.input_per_million)
    return None


# Anthropic's prompt-cache prices, as multiples of a model's input price (its pricing page): a write to the 5-minute
# cache 1.25x, to the 1-hour cache 2x, a read 0.1x. On an anthropic upstream a model priced without them gets them.
ANTHROPIC_CACHE_MULTIPLES = {"cache_write_per_million": Decimal("1.25"), "cache_write_1h_per_million": Decimal("2"),
                             "cached_input_per_million": Decimal("0.1")}


def anthropic_cache_prices(price: ModelPrice) -> ModelPrice:
    """``price`` with the prompt-cache prices it leaves out set as Anthropic bills them (:data:`ANTHROPIC_CACHE_MULTIPLES`
    of its input price): else its cache writes would be charged the input price, below Anthropic's bill.

    >>> p = anthropic_cache_prices(ModelPrice(model="c", input_per_million=Decimal("3"), output_per_million=Decimal("15"), date="d"))
    >>> p.cache_write_per_million, p.cache_write_1h_per_million, p.cached_input_per_million
    (Decimal('3.75'), Decimal('6'), Decimal('0.3'))
    """
    given = {name: getattr(price, name) for name in ANTHROPIC_CACHE_MULTIPLES}
    return replace(price, **{name: value if value is not None else price.input_per_million * ANTHROPIC_CACHE_MULTIPLES[name]
                             for name, value in given.items()})


def model_price(model: ModelConfig, table: object, *, local: bool = False, anthropic: bool = False) -> ModelPrice:
    """The price of a configured model: inline in the config, else (for a model that runs in-process, ``local``: free)
    from the price table; on an ``anthropic`` upstream, the prompt-cache prices it leaves out as Anthropic bills them
    (:func:`anthropic_cache_prices`).

    ``table`` is an :class:`evals.cost.PriceTable`. A chat model without an output price cannot
    be served: its worst case (``max_tokens`` out) would be unbounded. An embedding model
    (``kind = "embedding"``) writes no output: its output price is 0 unless given.

    >>> from ragtrim.serve.config import ModelConfig
    >>> model_price(ModelConfig("te3", kind="embedding", input_per_million=0.02), None).cost_micro(prompt_tokens=1000, completion_tokens=0)
    20
    """
    embeds = model.kind == "embedding"
    if model.input_per_million is not None:
        if model.output_per_million is None and not embeds:
            raise ValueError(f"model {model.name!r}: give output_per_million next to input_per_million in [models.{model.name!r}]")
        price = ModelPrice(
            model=model.name,
            input_per_million=_dec(model.input_per_million),
            output_per_million=_dec(model.output_per_million if model.output_per_million is not None else 0),
            date=model.price_date or "config",
            source="serve config",
            cached_input_per_million=_dec_or_none(model.cached_input_per_million),
            cache_write_per_million=_dec_or_none(model.cache_write_per_million),
            cache_write_1h_per_million=_write_1h_price(model),
        )
        return anthropic_cache_prices(price) if anthropic else price
    if local and model.price is None:  # in-process: it bills no one
        return ModelPrice(model=model.name, input_per_million=_dec(0), output_per_million=_dec(0), date="local",
                          source="in-process", cached_input_per_million=None)
    price = table.price(model.price if model.price is not None else model.name)  # type: ignore[attr-defined]
    if price.output_per_million is None and not embeds:
        raise ValueError(
            f"model {model.name!r}: the price table has no output_per_million for {price.model!r}; add it to the "
            "--prices file or set input_per_million and output_per_million in the serve config"
        )
    listed = ModelPrice(
        model=model.name,
        input_per_million=_dec(price.input_per_million),
        output_per_million=_dec(price.output_per_million if price.output_per_million is not None else 0),
        date=price.date,
        source=price.source,
        cached_input_per_million=_dec_or_none(price.cached_input_per_million),
    )
    return anthropic_cache_prices(listed) if anthropic else listed


def format_usd(micro: int) -> str:
    """Micro-dollars as a dollar string with six decimals."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), 1_000_000)
    return f"{sign}${whole}.{frac:06d}"


def parse_usd(text: str | int | float) -> int:
    """A dollar amount (``"5"``, ``"0.25"``, ``"$1.50"``) as integer micro-dollars.

    >>> parse_usd("$1.50"), parse_usd("0.000001"), parse_usd(2)
    (1500000, 1, 2000000)
    """
    raw = str(text).strip().lstrip("$")
    try:
        value = Decimal(raw)
    except Exception:
        raise ValueError(f"a dollar amount must be a number such as 5 or 0.25, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"a dollar amount must be a non-negative number, got {text!r}")
    micro = value * 1_000_000
    if micro != micro.to_integral_value():
        raise ValueError(f"a dollar amount has at most 6 decimals (micro-dollars), got {text!r}")
    return int(micro)
