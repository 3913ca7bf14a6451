"""Exact conversion between human prices (``Decimal`` or strings like ``"2.10"``) and the
integer micro-dollars the engine and the wire carry. Never a float."""

from decimal import Decimal, InvalidOperation

MICROS_PER_DOLLAR = 1_000_000


def parse_price(price: Decimal | str | int) -> int:
    """Dollars per GPU-hour to micro-dollars, exactly; refuses sub-micro-dollar amounts."""
    if isinstance(price, bool) or isinstance(price, float):
        raise TypeError("prices are Decimal, str or int dollars, never float")
    try:
        d = Decimal(price)
    except InvalidOperation:
        raise ValueError(f"not a price: {price!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a price: {price!r}")
    micros = d * MICROS_PER_DOLLAR
    if micros != micros.to_integral_value():
        raise ValueError(f"price {price!r} is finer than one micro-dollar")
    return int(micros)


def format_price(micros: int) -> str:
    """Micro-dollars to a dollar string with at least two decimals: 2_100_000 -> "2.10"."""
    d = (Decimal(micros) / MICROS_PER_DOLLAR).normalize()
    text = format(d, "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"
