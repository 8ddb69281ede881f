"""The one base class of the user's mistakes, and how the backend answers them.

A `UserError` is about what the user gave (an image, parameters, a mask, weights they have
not installed): its message is one sentence they can act on, the CLI prints it on one line
and exits 2 (3 for weights), and the backend's one handler of them (`clipascene_backend.app`)
answers `{"detail": http_prefix + message}` with `http_status`. Anything else that goes wrong
is an internal error: logged with its traceback, shown as such.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message says what to change."""

    #: The HTTP status the backend answers with.
    http_status = 400
    #: What the backend's answer says before the message.
    http_prefix = ""


class ConfigError(UserError, ValueError):
    """A parameter is out of range or inconsistent; the message says what to change."""

    http_status = 422  # the request is well formed; its parameters are not
    http_prefix = "invalid params: "
