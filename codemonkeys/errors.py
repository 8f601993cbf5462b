"""Typed failures.

Control flow and bookkeeping run on these classes: a trajectory or instance
boundary catches them and records *which kind* of failure happened, because
infrastructure failures are retried by a rerun while model failures are not.
Nothing in the code base returns ``None`` or ``""`` to signal an error.
"""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    """How a failure is recorded in the store and shown in reports."""

    INFRA = "infra"
    MODEL = "model"
    BUDGET = "budget"
    USER = "user"


class CodeMonkeysError(Exception):
    """Base class of every error this package raises on purpose."""

    kind: FailureKind = FailureKind.INFRA


# --- user input -------------------------------------------------------------


class UserError(CodeMonkeysError):
    """Bad input from the person running the tool (config, flags, data files)."""

    kind = FailureKind.USER


class ConfigError(UserError):
    """A config file or override that cannot be read or does not validate."""


class DataError(UserError):
    """A dataset row, prediction file or label file that is malformed."""


class StoreDamaged(UserError):
    """A run's store file is not a readable database (truncated, overwritten): the user must move it."""


class EndpointError(UserError):
    """A configured model server is not answering, rejects the key, or does not serve the model."""


class MissingCredentialsError(UserError):
    """A provider was selected but its API key is not available."""


class UnknownProviderError(UserError):
    """A model string names a provider this package does not know."""


# --- infrastructure ---------------------------------------------------------


class InfraError(CodeMonkeysError):
    """Our machinery failed, not the model: retried by ``--retry-infra``."""

    kind = FailureKind.INFRA


class ProviderError(InfraError):
    """An LLM API call failed after the SDK's retries were used up."""

    def __init__(self, message: str, *, status_code: int | None = None, maybe_billed: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        # The request reached the provider and its answer was lost (a timeout, a dropped
        # connection): it may have been billed, so the books keep its worst case.
        self.maybe_billed = maybe_billed


class SandboxError(InfraError):
    """A sandbox could not be started, reached or cleaned up."""


class SandboxFileNotFoundError(SandboxError):
    """A file read from a sandbox does not exist there."""


class BuildError(InfraError):
    """An environment image could not be built or pulled."""


class RepoError(InfraError):
    """A repository could not be cloned, read or checked out."""


class ContextUnreachable(InfraError):
    """The context stage could not reach its model for some files: a rerun scores only those."""


# --- model failures ---------------------------------------------------------


class ModelFailure(CodeMonkeysError):
    """The model's behaviour ended the work: not retried by a rerun."""

    kind = FailureKind.MODEL


class ParseError(ModelFailure):
    """A model answer does not follow the requested output format."""


class TurnLimitReached(ModelFailure):
    """A trajectory used all its turns without finishing."""


class EditApplyError(ModelFailure):
    """A SEARCH/REPLACE edit does not apply to the code."""


class EmptyContext(ModelFailure):
    """No relevance answer could be read, or no file was judged relevant: generation never starts on it."""


class ContextLimitReached(ModelFailure):
    """The conversation no longer fits the model's context window.

    Raised before a call whose prompt plus ``max_tokens`` would not fit, and by
    providers for a server's own context-length error (HTTP 400 in each vendor's
    wording). A model-side outcome: a trajectory keeps its last edit and test,
    and a rerun never retries it as infrastructure.
    """

    def __init__(self, message: str, *, prompt_tokens: int | None = None, window: int | None = None) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.window = window


# --- budget -----------------------------------------------------------------


class BudgetExceeded(CodeMonkeysError):
    """Starting another call could push spending past a configured budget."""

    kind = FailureKind.BUDGET


def failure_kind(exc: BaseException) -> FailureKind:
    """The kind a caught exception is recorded as; unknown errors are ours."""
    if isinstance(exc, CodeMonkeysError):
        return exc.kind
    return FailureKind.INFRA
