"""Cache entries of values (services/values.py encode/decode): decoding is memoised by the entry's bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from creditgate.services import values as v

NOW = datetime(2024, 1, 15, 12, 0, 30, tzinfo=UTC)


def test_decode_round_trip_and_expiry() -> None:
    value = v.EntValue(True, Decimal("99999.500000000001"), Decimal("0.5"), Decimal("0"))
    raw = v.encode(NOW + timedelta(minutes=1), "ent1", "metered", value)
    for _ in range(2):  # the second read comes from the memo
        assert v.decode(bytes(bytearray(raw)), NOW) == ("ent1", "metered", value)
        assert v.decode(raw, v._micros(NOW)) == ("ent1", "metered", value)
    assert v.decode(raw, NOW + timedelta(minutes=1)) is None  # expired, memo or not
    assert v.decode(raw, v._micros(NOW + timedelta(minutes=2))) is None
    assert v._expiry(raw) == NOW + timedelta(minutes=1)
    none = v.encode(None, None, None, None)
    assert v.decode(none, NOW) == (None, None, None) and v._expiry(none) is None
    forever = v.encode(None, "e", "boolean", v.EntValue(True))
    assert v.decode(forever, NOW + timedelta(days=10_000)) == ("e", "boolean", v.EntValue(True))


def test_entries_with_config_are_decoded_afresh() -> None:
    """A config is mutable JSON: every read gets its own copy."""
    raw = v.encode(None, "e", "static", v.EntValue(True, config={"seats": [1, 2]}))
    first, second = v.decode(raw, NOW), v.decode(raw, NOW)
    assert first is not None and second is not None and first[2] is not None and second[2] is not None
    assert first == second and first[2].config is not second[2].config


def test_memo_is_bounded() -> None:
    v._DECODED.clear()
    for i in range(v.DECODED_MAX + 10):
        v.decode(v.encode(None, f"e{i}", "boolean", v.EntValue(True)), NOW)
    assert 0 < len(v._DECODED) <= v.DECODED_MAX
