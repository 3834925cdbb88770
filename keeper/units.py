"""Fixed-point units and Solidity-exact integer helpers. Money is always ``int``.

Names carry their rounding: ``mul_div_down`` floors, ``mul_div_up`` ceils,
``sol_div`` truncates toward zero like Solidity's signed division.
"""

from __future__ import annotations

WAD = 10**18
HALF_WAD = WAD // 2
RAY = 10**27
HALF_RAY = RAY // 2
WAD_RAY_RATIO = 10**9
BPS = 10_000  # Aave's PercentageMath PERCENTAGE_FACTOR (100.00%)
HALF_BPS = BPS // 2
UINT256_MAX = 2**256 - 1
SECONDS_PER_YEAR = 365 * 24 * 3600


def mul_div_down(x: int, y: int, d: int) -> int:
    """floor(x * y / d) for non-negative operands."""
    if d == 0:
        raise ZeroDivisionError("mul_div_down by zero")
    return x * y // d


def mul_div_up(x: int, y: int, d: int) -> int:
    """ceil(x * y / d) for non-negative operands."""
    if d == 0:
        raise ZeroDivisionError("mul_div_up by zero")
    return -(-(x * y) // d)


def sol_div(a: int, b: int) -> int:
    """Solidity signed division: truncates toward zero (Python's // floors)."""
    if b == 0:
        raise ZeroDivisionError("sol_div by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def parse_fixed(text: str, decimals: int) -> int:
    """'1.15' with 18 decimals -> 1150000000000000000, exactly (no float on the way)."""
    s = text.strip()
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    if not s or s.count(".") > 1 or not s.replace(".", "").isdigit():
        raise ValueError(f"not a decimal number: {text!r}")
    whole, _, frac = s.partition(".")
    if len(frac) > decimals:
        raise ValueError(f"{text!r} has more than {decimals} decimals")
    value = int(whole or "0") * 10**decimals + int((frac or "0").ljust(decimals, "0"))
    return -value if neg else value


def format_fixed(value: int, decimals: int, places: int | None = None) -> str:
    """Format an integer in base units for people (no float): 1234500, 6 -> '1.2345'."""
    sign = "-" if value < 0 else ""
    q, r = divmod(abs(value), 10**decimals)
    frac = str(r).rjust(decimals, "0") if decimals else ""
    if places is not None:
        frac = frac[:places]
    frac = frac.rstrip("0") if places is None else frac
    return f"{sign}{q}.{frac}" if frac else f"{sign}{q}"


HF_SHOWN_MAX_WAD = 1000 * 10**18  # above this a health factor is just "> 1000" for people


def format_hf(hf_wad: int | None) -> str:
    """A health factor (wad) for people: 4 decimals truncated (never shown healthier than it
    is), "no debt" for none (``None`` or Aave's ``type(uint256).max``), "> 1000" above 1000."""
    if hf_wad is None or hf_wad >= UINT256_MAX:
        return "no debt"
    if hf_wad > HF_SHOWN_MAX_WAD:
        return "> 1000"
    return format_fixed(hf_wad, 18, 4)
