"""REST routes of Secrets (``rayfn secret``), under ``/v1``, behind the token.

A create takes the values in its JSON body (never in the URL, which servers log); no
route returns a value: a call's process gets them from the registry over Ray only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.secrets import validate_secret_name
from rayfn.secret_schemas import SecretCreateRequest, SecretInfoResponse, SecretList
from rayfn_service.api.routes import STORE_REFUSED, _errors, registry

router = APIRouter(prefix="/v1")

Name = Annotated[str, Path(description="The secret's name", max_length=64)]


@router.put("/secrets/{name}", status_code=204, responses=_errors(409, STORE_REFUSED),
            summary="Store a secret (409 if it exists, unless `overwrite`)")
async def create_secret(request: Request, name: Name, body: SecretCreateRequest) -> Response:
    await registry(request).call(RegistryApi.secret_create, validate_secret_name(name),
                                 body.values, body.overwrite)
    return Response(status_code=204)


@router.get("/secrets", response_model=SecretList, responses=_errors(),
            summary="Every stored secret with its keys' names (never their values)")
async def list_secrets(request: Request) -> SecretList:
    found = await registry(request).call(RegistryApi.secret_list)
    return SecretList(secrets=[
        SecretInfoResponse(name=s.name, created_at=s.created_at, updated_at=s.updated_at,
                           keys=list(s.keys)) for s in found])


@router.delete("/secrets/{name}", status_code=204, responses=_errors(404),
               summary="Delete a secret")
async def delete_secret(request: Request, name: Name) -> Response:
    await registry(request).call(RegistryApi.secret_delete, validate_secret_name(name))
    return Response(status_code=204)
