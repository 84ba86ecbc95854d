"""REST bodies of Secrets: the server's request/response models and the HTTP client's.
Values go in (a create's body) and never come out: listings carry key names only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["SecretCreateRequest", "SecretInfoResponse", "SecretList"]


class SecretCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: dict[str, str]
    overwrite: bool = False


class SecretInfoResponse(BaseModel):
    name: str
    created_at: float
    updated_at: float
    keys: list[str]
    """The names of its environment variables, never their values."""


class SecretList(BaseModel):
    secrets: list[SecretInfoResponse]
