"""Errors a user can cause: each has an exit code and prints as one line."""

from __future__ import annotations

from contextlib import contextmanager
from enum import IntEnum
from typing import Iterator, Type


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1          # the job failed, or a remote step failed
    BAD_SPEC = 2        # the spec or the command line is wrong
    UNREACHABLE = 3     # the host does not answer
    AUTH = 4            # authentication failed or the host key changed
    NOT_FOUND = 5       # no such job (or backup name)
    NO_BACKUP = 6       # the job has no backup that verifies
    INTERRUPTED = 130


class TetherError(Exception):
    exit_code = ExitCode.FAILED

    def __init__(self, what: str, todo: str = "") -> None:
        super().__init__(what)
        self.what, self.todo = what, todo

    def line(self) -> str:
        return f"{self.what} — {self.todo}" if self.todo else self.what


class SpecError(TetherError):
    exit_code = ExitCode.BAD_SPEC


class UsageError(TetherError):
    exit_code = ExitCode.BAD_SPEC


class UnreachableError(TetherError):
    exit_code = ExitCode.UNREACHABLE


class AuthError(TetherError):
    exit_code = ExitCode.AUTH


class HostKeyChangedError(AuthError):
    pass


class NotFoundError(TetherError):
    exit_code = ExitCode.NOT_FOUND


class NoBackupError(TetherError):
    """Nothing verified to pull, resume or move from."""

    exit_code = ExitCode.NO_BACKUP


class RemoteError(TetherError):
    """A command on the host failed; carries the tail of its stderr."""


class RuntimeGoneError(RemoteError):
    """The job's tether runtime is not on its host any more (wiped or rebuilt): nothing of the
    job runs there from it (agent.protocol.NO_RUNTIME_EXIT)."""


class UnsafePathError(TetherError):
    """A pulled path would leave its destination folder."""


@contextmanager
def provider_errors(kind: Type[TetherError] = RemoteError) -> Iterator[None]:
    """The one place a provider's error (provisioning.base.ProviderError: what, todo, its HTTP
    status) becomes the CLI's: a refused key is AuthError (exit 4), the rest `kind` (a bad
    setting: UsageError; trouble on the provider's side: RemoteError)."""
    from provisioning.base import AuthFailed, ProviderError

    try:
        yield
    except AuthFailed as exc:
        raise AuthError(exc.what, exc.todo) from None
    except ProviderError as exc:
        raise kind(exc.what, exc.todo) from None
