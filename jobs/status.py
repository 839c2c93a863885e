"""The status names, which the API's answers carry: defined with them in tinytrain/wire.py, which the
client installs without the service."""

from tinytrain.wire import ACTIVE, Status

__all__ = ["ACTIVE", "Status"]
