"""copydesk's exceptions: one tree, translated from foreign errors at the boundary.

    CopydeskError                      exit 1 unless a subclass says otherwise
    ├── InputError                     exit 2: the user's input is wrong; no API call was made
    │   ├── SpecError                  a pipeline spec (file, field, YAML line)
    │   ├── TemplateError              a prompt template (file, line, missing variable)
    │   ├── TopicError                 a topic or topics file
    │   └── RunFolderError             a run folder or run id (copydesk.rundir: manifest mismatch, reserved id)
    │       └── ReviewError            a review decision that cannot apply (copydesk.review)
    ├── ApiError                       the OpenAI API (chat, models, moderation), from copydesk.client
    │   ├── AuthenticationError        exit 4: 401/403, the key is wrong; never retried
    │   ├── ModelNotFoundError         exit 2: 404 for the model; lists the models offered
    │   ├── BadRequestError            400: that article is incomplete, the batch goes on
    │   ├── QuotaExceededError         429 insufficient_quota: out of credit; stops the run, never retried
    │   ├── RateLimitError             429 after every retry
    │   ├── ServerError                5xx after every retry
    │   ├── TransportError             timeout or dropped connection after every retry
    │   └── MalformedResponseError     a body that is not a chat completion
    │       └── UnusableResponseError  too large, too deep, or an id that is not one (never retried)
    ├── BudgetExhausted                exit 3: the next call cannot fit in the token budget
    ├── NothingProduced                exit 1: every article incomplete, not for the budget (the run's summary attached)
    ├── ServiceError                   an embedded server (llama.cpp, LanguageTool) failed
    └── ReviewInterrupted              a review decision cut short; the next review finishes it (copydesk.review)

RunFolderError, ReviewError and ReviewInterrupted live with the concept they guard (rundir, review);
they are drawn here so that the whole tree is in one picture.

Every message names what the user should look at (the file, the field, the
environment variable) and never contains an API key, nor a URL's userinfo or
query string: every message is passed through `copydesk.redact.redact` when the exception
is made, so a server's echo of a key or an `Authorization:` header cannot reach a file, a
log, an artifact or the terminal through an exception.
"""

from __future__ import annotations

from copydesk.redact import redact


class CopydeskError(Exception):
    """Base of every error copydesk raises on purpose."""

    exit_code: int = 1

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class InputError(CopydeskError):
    exit_code = 2


class SpecError(InputError):
    """A pipeline spec is unreadable or invalid."""


class ProjectError(InputError):
    """A project marker (copydesk.toml, [tool.copydesk]) is unreadable, or `copydesk init` would overwrite a file."""


class TemplateError(InputError):
    """A prompt template is missing, broken, or needs a variable nobody provides."""


class TopicError(InputError):
    """A topic is empty or a topics file is unreadable."""


class ApiError(CopydeskError):
    """The OpenAI API answered with an error, or did not answer (mapped once, in copydesk.client)."""

    #: Retried by `copydesk.calls` and `ChatClient.post_json` (429, 5xx, 408/409, timeouts, dropped connections).
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        charged: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        #: Seconds the server asked us to wait, if it said.
        self.retry_after = retry_after
        #: The API may have spent tokens on this attempt without telling us how many
        #: (a timeout after the request was sent, an unreadable 200): the budget
        #: then counts the attempt's whole reservation as spent.
        self.charged = charged


class AuthenticationError(ApiError):
    exit_code = 4


class ModelNotFoundError(ApiError):
    exit_code = 2

    def __init__(self, message: str, *, model: str, available: list[str] | None = None) -> None:
        super().__init__(message, status_code=404)
        self.model = model
        self.available = available or []


class BadRequestError(ApiError):
    pass


class QuotaExceededError(ApiError):
    """The account has no credit left: every later call would fail the same way."""


class RateLimitError(ApiError):
    retryable = True


class ServerError(ApiError):
    retryable = True


class TransportError(ApiError):
    retryable = True

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message, charged=sent)
        self.sent = sent


class MalformedResponseError(ApiError):
    """A 200 whose body is not a usable chat completion; retried, and counted as charged."""

    retryable = True


class UnusableResponseError(MalformedResponseError):
    """An answer copydesk will not use: larger than COPYDESK_MAX_ANSWER_BYTES, nested deeper than
    copydesk reads, or an id that is not an id (copydesk.batchapi): that call (or batch line)
    fails with this reason, the run goes on; not retried (the answer would be the same)."""

    retryable = False


class BudgetExhausted(CopydeskError):
    """Raised instead of starting a call that could push the run past its budget."""

    exit_code = 3


class NothingProduced(CopydeskError):
    """A run that finished with every article incomplete for a reason other than the budget: the
    flow run ends Failed with this one-line reason, `copydesk run` exits 1."""


class ServiceError(CopydeskError):
    """An embedded server could not be found, started or reached."""
