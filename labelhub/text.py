"""Text no database can store: NUL (PostgreSQL refuses it in text and JSON) and lone UTF-16 surrogates (not text:
they have no UTF-8 encoding, so every driver fails on them)."""
import re

_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def bad_character(text: str) -> str | None:
    """Name the first character of ``text`` that no database column can store as text, or None."""
    found = _BAD_CHARACTER.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "a NUL character (\\u0000)"
    return f"a lone surrogate (\\u{ord(char):04x}), which is not text"
