"""A listing's icon is one emoji (or one symbol such as ★), never text.

`is_single_icon` accepts exactly one user-perceived character built the way emoji are built:
a pictographic base (Unicode category "So"), optionally followed by modifiers (variation
selector, skin tone, tag characters), optionally joined to further bases by ZERO WIDTH JOINER
(👩‍💻); or a flag (two regional indicators); or a keycap (1️⃣). It is deliberately narrower
than a general grapheme cluster: "A", "ab" and "🙂🙂" are refused.
"""

from __future__ import annotations

import unicodedata

ICON_MAX_LENGTH = 16  # code points: the model's max_length
ICON_ERROR = "Use a single emoji, such as 🧾 (not text), or leave it empty."

_ZWJ = "\u200d"
_KEYCAP = "\u20e3"
_VARIATION_SELECTORS = ("\ufe0e", "\ufe0f")


def _is_modifier(char: str) -> bool:
    code = ord(char)
    return (
        char in _VARIATION_SELECTORS
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _is_pictographic(char: str) -> bool:
    return unicodedata.category(char) == "So" and not _is_regional_indicator(char)


def is_single_icon(value: str) -> bool:
    chars = list(value)
    if not chars or len(chars) > ICON_MAX_LENGTH:
        return False
    if chars[0] in "0123456789#*":
        return chars[1:] in ([_KEYCAP], ["\ufe0f", _KEYCAP])
    if _is_regional_indicator(chars[0]):
        return len(chars) == 2 and _is_regional_indicator(chars[1])
    expect_base = True
    for char in chars:
        if expect_base:
            if not _is_pictographic(char):
                return False
            expect_base = False
        elif char == _ZWJ:
            expect_base = True
        elif not _is_modifier(char):
            return False
    return not expect_base
