"""MeshErrors across the control socket: the same error, and the same one line, either side."""

from __future__ import annotations

import grpc

from mesh.core import errors as e

_TO_STATUS: list[tuple[type[e.MeshError], grpc.StatusCode]] = [
    (e.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (e.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (e.NotInitializedError, grpc.StatusCode.FAILED_PRECONDITION),
    (e.HomeBusyError, grpc.StatusCode.ABORTED),
    (e.RemoteError, grpc.StatusCode.UNAVAILABLE),
    (e.MeshError, grpc.StatusCode.FAILED_PRECONDITION),
]
_FROM_STATUS: dict[grpc.StatusCode, type[e.MeshError]] = {
    grpc.StatusCode.NOT_FOUND: e.NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: e.AlreadyExistsError,
    grpc.StatusCode.INVALID_ARGUMENT: e.InvalidArgumentError,
    grpc.StatusCode.ABORTED: e.HomeBusyError,
    grpc.StatusCode.UNAVAILABLE: e.RemoteError,
    grpc.StatusCode.FAILED_PRECONDITION: e.LocalError,
}


def status_of(error: e.MeshError) -> grpc.StatusCode:
    for kind, code in _TO_STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def error_of(code: grpc.StatusCode, details: str) -> e.MeshError:
    return _FROM_STATUS.get(code, e.LocalError)(details)
