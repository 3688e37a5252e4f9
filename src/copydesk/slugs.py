"""Safe, unique file names for articles, whatever the topic or title."""

from __future__ import annotations

from slugify import slugify

from copydesk.controls import clean_line

MAX_SLUG_LENGTH = 80

#: Device names Windows reserves, alone or before a dot ("nul.md" is the null device too).
WINDOWS_RESERVED = frozenset({
    "con", "prn", "aux", "nul", "conin$", "conout$", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10)),
})


def is_windows_reserved(name: str) -> bool:
    """True when `name` (a file name, with or without extension, any case) is a Windows device name."""
    return name.split(".", 1)[0].strip().casefold() in WINDOWS_RESERVED


def windows_name_problem(name: str) -> str | None:
    """Why Windows cannot hold a file or folder called `name`, or None: the one rule for
    slugs and run ids (a device name, with any extension, in any case; a trailing dot or space)."""
    if is_windows_reserved(name):
        return ("a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9, CONIN$, CONOUT$, "
                "with any extension)")
    if name.endswith((".", " ")):
        return "ends in a dot or a space, which Windows drops from a file name"
    return None


def make_slug(text: str, *, fallback: str = "article") -> str:
    """ASCII only (Chinese is transliterated), lower case, dashes, no dots or
    slashes, so it can never name a folder outside the run or a hidden file;
    never a name Windows cannot hold (`con`, `nul`, `com1`, ...: those get `-1`;
    `windows_name_problem`)."""
    slug = slugify(clean_line(text or ""), max_length=MAX_SLUG_LENGTH, word_boundary=True, save_order=True, allow_unicode=False)
    slug = slug or fallback
    return f"{slug}-1" if windows_name_problem(slug) else slug


class SlugRegistry:
    """Hands out slugs, making collisions unique with -2, -3, ..."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def claim(self, text: str, *, fallback: str = "article", position: int | None = None) -> str:
        """`position` (1-based place in the batch) makes a collision's suffix independent
        of the order in which articles finish."""
        base = make_slug(text, fallback=fallback)
        slug, n = base, position if position and position > 1 else 2
        while slug in self._taken:
            suffix = f"-{n}"
            slug = base[: MAX_SLUG_LENGTH - len(suffix)].rstrip("-") + suffix
            n += 1
        self._taken.add(slug)
        return slug
