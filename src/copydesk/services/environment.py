"""The minimal environment every child process starts with (servers, the warm-up, `java -version`).

    child_environment(extra, base=, prefixes=, keep=)

An allowlist of the caller's environment: PATH, HOME, locale, TZ, TMPDIR, JAVA_HOME, ...,
the LC_* and COPYDESK_* settings, plus the name prefixes a server asks for (only the local
Prefect server asks for PREFECT_*), then `extra`, what the server itself is given.

Whatever the allowlist says, no secret is inherited: nothing named OPENAI_*, *_API_KEY, or
containing PASSWORD, TOKEN, SECRET or AUTH (so none of PREFECT_API_KEY,
PREFECT_API_AUTH_STRING, PREFECT_SERVER_API_AUTH_STRING, PREFECT_SERVER_DATABASE_PASSWORD);
the name prefixes in `keep` are the one exception, for the server that needs them (the
Prefect server keeps PREFECT_SERVER_* and PREFECT_API_DATABASE_*: its database URL, its
database password and its own auth string).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Variables a child may inherit, by exact name ...
CHILD_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "JAVA_HOME", "VIRTUAL_ENV", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "DO_NOT_TRACK",
})
#: ... and by prefix (locale categories and copydesk's own settings).
CHILD_ENV_PREFIXES = ("LC_", "COPYDESK_")
#: A name containing one of these holds a secret.
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "AUTH")


def secret_name(name: str) -> bool:
    """OPENAI_*, *_API_KEY, and any name containing PASSWORD, TOKEN, SECRET or AUTH."""
    upper = name.upper()
    return upper.startswith("OPENAI_") or upper.endswith("_API_KEY") or any(word in upper for word in SECRET_WORDS)


def child_environment(
    extra: Mapping[str, str] | None = None,
    *,
    base: Mapping[str, str] | None = None,
    prefixes: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
) -> dict[str, str]:
    """The environment a child starts with: the allowlisted part of `base` (default: this
    process's), names starting with `prefixes` too, no secret except names starting with
    `keep`; then `extra`."""
    base = os.environ if base is None else base
    allowed = CHILD_ENV_PREFIXES + prefixes
    env = {
        name: value
        for name, value in base.items()
        if (name in CHILD_ENV_NAMES or name.startswith(allowed))
        and (not secret_name(name) or (bool(keep) and name.startswith(keep)))
    }
    env.update(extra or {})
    return env
