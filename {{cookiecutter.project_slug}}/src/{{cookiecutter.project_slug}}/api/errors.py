"""Error responses: invalid input is a 422 that never echoes the input back."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default handler echoes the offending input; input that cannot be encoded again
    # (a lone surrogate in a JSON string, say) would then turn a 422 into a 500.
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errors})


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
