"""Request bodies as every HTTP route reads them: JSON that cannot take the service down, and
connections that cannot be wedged by a body we chose not to read.

- `loads` decodes JSON with every failure, deep nesting included (`[[[[...` 100k deep makes
  the C decoder raise RecursionError), turned into `BadJson` with a clear message: a 400,
  never a 500.
- `close_if_unread`: a route that answers before reading the body (401, 429, 415, ...) leaves
  the rest of it in the socket; on a kept-alive connection the next request then waits behind
  it until a timeout. Such responses say `Connection: close`, so the server ends the
  connection instead.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request

__all__ = ["BadJson", "close_if_unread", "loads"]


class BadJson(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def loads(raw: str | bytes) -> Any:
    """json.loads, with every way a client can get it wrong raised as BadJson."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadJson("The body is not valid JSON: it is nested too deeply.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadJson("The body is not valid JSON.") from None


def close_if_unread(resp: Response) -> Response:
    """After-request hook: `Connection: close` when the request's body was not read to its end
    (there is no other way to be rid of it on HTTP/1.1)."""
    complete = getattr(getattr(request, "body", None), "_complete", None)
    has_body = request.content_length or request.headers.get("Transfer-Encoding")
    if has_body and complete is not None and not complete.is_set():
        resp.headers["Connection"] = "close"
    return resp
