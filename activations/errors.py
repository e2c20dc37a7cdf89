"""The one exception type for bad input from the user (an option, a file, a model or database name).

It lives in the bottom layer so every package above can raise it. The CLI prints a UserError as one line and
exits 1; any other exception is a bug and keeps its traceback. Its message says which item is wrong, what is
wrong with it, and what to do. It is a ValueError, so callers that catch bad values keep catching it.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; the message names the item, the problem and the fix."""
