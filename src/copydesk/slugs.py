"""Safe, unique file names for articles, whatever the topic or title."""

from __future__ import annotations

from slugify import slugify

MAX_SLUG_LENGTH = 80


def make_slug(text: str, *, fallback: str = "article") -> str:
    """ASCII only (Chinese is transliterated), lower case, dashes, no dots or
    slashes, so it can never name a folder outside the run or a hidden file."""
    slug = slugify(text or "", max_length=MAX_SLUG_LENGTH, word_boundary=True, save_order=True, allow_unicode=False)
    return slug or fallback


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
