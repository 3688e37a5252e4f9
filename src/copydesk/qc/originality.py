"""Near-duplicate articles: within a run, and against what is already published.

    index = ArticleIndex(threshold=0.5)
    index.load_published(out_dir, exclude=run_dir)     # <out>/<run>/published/*.md
    index.match(text, "en-US")  -> [("<run>/published/x.md", 0.83)]  (estimated Jaccard)
    index.add("<run>/published/y.md", text, "en-US")

MinHash over word 5-grams (character 8-grams for Chinese/Japanese) with an LSH
index (`datasketch`): each article costs one signature (128 permutations), a
lookup is sub-linear in the number of articles. What it can see: articles that
share long runs of wording with an earlier one (copied or lightly edited text,
the same model answer twice). What it cannot: paraphrase, translation, text
copied from outside the output folder (the web, another folder), articles that
were held rather than published, and files deleted or moved since.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydantic import Field

from copydesk.qc.check import CheckPolicy
from copydesk.qc.terms import shingle_size, shingles, tokens
from copydesk.markup import split_front_matter
from copydesk.text import plain_text

NUM_PERM = 128
#: Articles shorter than this many n-grams are not indexed or compared.
MIN_SHINGLES = 20
#: Signatures kept for texts seen last (articles checked at the same time).
RECENT = 16


class OriginalityPolicy(CheckPolicy):
    #: Estimated Jaccard similarity (MinHash) of two articles' word 5-grams at which the later is held.
    max_similarity: float = Field(0.5, gt=0.0, le=1.0)
    #: Compare with the articles already published under the same output folder, not only this run's.
    against_published: bool = True


class ArticleIndex:
    """Articles seen so far, by key; thread-safe."""

    def __init__(self, threshold: float) -> None:
        from datasketch import MinHashLSH  # noqa: PLC0415

        from datasketch import MinHash  # noqa: PLC0415

        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._signatures: dict[str, object] = {}
        self._lock = threading.Lock()
        #: An empty signature: new ones are its copies, which share its permutations (drawing them
        #: from the seed again costs more than hashing a short article).
        self._blank = MinHash(num_perm=NUM_PERM)
        #: The last few signatures computed, by (text, language): a published article is matched,
        #: then added.
        self._recent: dict[tuple[str, str], object] = {}

    def _signature(self, text: str, language: str):
        key = (text, language)
        with self._lock:
            if key in self._recent:
                return self._recent[key]
        grams = shingles(tokens(plain_text(text, keep_code=False), language), shingle_size(language))
        signature = None
        if len(grams) >= MIN_SHINGLES:
            signature = self._blank.copy()
            signature.update_batch([" ".join(g).encode("utf-8") for g in grams])
        with self._lock:
            self._recent[key] = signature
            while len(self._recent) > RECENT:
                del self._recent[next(iter(self._recent))]
        return signature

    def match(self, text: str, language: str) -> list[tuple[str, float]]:
        """Indexed articles whose estimated similarity to `text` is at least the threshold."""
        signature = self._signature(text, language)
        if signature is None:
            return []
        with self._lock:
            keys = self._lsh.query(signature)
            scored = [(k, float(signature.jaccard(self._signatures[k]))) for k in keys]
        return sorted([(k, s) for k, s in scored if s >= self.threshold], key=lambda kv: -kv[1])

    def add(self, key: str, text: str, language: str) -> None:
        signature = self._signature(text, language)
        if signature is None:
            return
        with self._lock:
            if key in self._signatures:
                self._lsh.remove(key)
            self._signatures[key] = signature
            self._lsh.insert(key, signature)

    def load_published(self, root: Path, language: str, exclude: Path | None = None) -> int:
        """Index every `<root>/<run>/published/*.md` (front matter dropped), except under `exclude`."""
        count = 0
        if not root.is_dir():
            return 0
        skip = exclude.resolve() if exclude is not None else None
        for path in sorted(root.glob("*/published/*.md")):
            if skip is not None and path.resolve().is_relative_to(skip):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            self.add(str(path.relative_to(root)), split_front_matter(text)[1], language)
            count += 1
        return count
