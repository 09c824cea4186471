"""OpenAI's error answers, as both of the fake server's modules give them."""

from starlette.responses import JSONResponse


def error_body(message: str, code: str | None = None, param: str | None = None) -> dict:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def error_response(
    status: int, message: str, headers: dict | None = None, code: str | None = None, param: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, code, param), status_code=status, headers=headers)
