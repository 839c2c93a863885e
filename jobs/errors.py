"""Domain errors; only api/ turns them into HTTP statuses."""


class NotFound(Exception):
    """No such object for this owner."""


class Conflict(Exception):
    """The object is not in a state that allows this."""


class IdempotencyMismatch(Exception):
    """An Idempotency-Key was reused with a different request."""


class QuotaExceeded(Exception):
    """The owner has as many active jobs as allowed."""
