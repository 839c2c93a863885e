"""Domain errors; only api/ turns them into HTTP statuses."""


class NotFound(Exception):
    """No such object for this owner."""


class Conflict(Exception):
    """The object is not in a state that allows this."""


class IdempotencyMismatch(Exception):
    """An Idempotency-Key was reused with a different request."""


class QuotaExceeded(Exception):
    """The owner has as many active jobs and sweeps as allowed."""


class InvalidInput(Exception):
    """A request that cannot be run: loc names the field (as in a 422's detail), the message why."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class QueueUnavailable(Exception):
    """The job queue did not take the run; nothing was stored."""
