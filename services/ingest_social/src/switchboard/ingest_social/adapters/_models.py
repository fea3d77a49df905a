"""Validation helpers shared by the JSON adapters whose body format Switchboard defines."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from switchboard.ingest_social.sdk import MalformedPayload

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: object) -> M:
    """The model, or ``MalformedPayload`` naming the bad fields (never their values, which may be personal)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise MalformedPayload(f"invalid payload: {problems}") from None
