"""The API's errors as upstream's apierrors make them: a Status with code, reason, message and
details, raised by any layer and written out by the HTTP layer."""

from __future__ import annotations

from netlab.api.resources import Resource
from netlab.control.apiserver.validation import FieldError


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A Status with its fields in the order of upstream's Go struct (so its JSON is the same
    bytes); details without the empty group of a core kind, as Go's omitempty leaves it out."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 300 else "Success",
            "message": message, "reason": reason}
    if details:
        body["details"] = {k: details[k] for k in ("name", "group", "kind", "uid", "causes", "retryAfterSeconds")
                           if details.get(k) not in (None, "")}
    body["code"] = code
    return body


def qualified(r: Resource) -> str:
    return f"{r.plural}.{r.group}" if r.group else r.plural


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def not_found(r: Resource, name: str) -> APIError:
    return APIError(404, "NotFound", f'{qualified(r)} "{name}" not found', {"name": name, "group": r.group,
                                                                          "kind": r.plural})


def no_route() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource")


def already_exists(r: Resource, name: str) -> APIError:
    return APIError(409, "AlreadyExists", f'{qualified(r)} "{name}" already exists',
                    {"name": name, "group": r.group, "kind": r.plural})


def conflict(r: Resource, name: str) -> APIError:
    return APIError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(r)} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": r.group, "kind": r.plural})


def invalid(r: Resource, name: str, errors: list[FieldError]) -> APIError:
    causes = [{"reason": e.reason, "message": e.message, "field": e.field} for e in errors]
    kind = f'{r.kind}{"." + r.group if r.group else ""}'
    fields = ", ".join(f"{e.field}: {e.message}" for e in errors)
    msg = f'{kind} "{name}" is invalid: ' + (fields if len(errors) == 1 else f"[{fields}]")
    return APIError(422, "Invalid", msg, {"name": name, "group": r.group, "kind": r.kind, "causes": causes})


def cannot_decode(r: Resource, kind: str, problem: str) -> APIError:
    return bad_request(f'{kind} in version "{r.version}" cannot be handled as a {kind}: {problem}')


class Invalid(Exception):
    """Field errors found below the object layer (a strategy's allocator), which makes them a 422."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors
