"""REST routes of Volumes (``rayfn.Volume``, ``rayfn volume``), under ``/v1/volumes``.

The registry does the file work and checks every path; file bytes are base64 in JSON, a
chunk of at most ``MAX_CHUNK_BYTES`` a request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from rayfn.exception import InvalidError
from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.volumes import MAX_CHUNK_BYTES, MAX_PATH_CHARS
from rayfn.volume_schemas import (
    VolumeCopyRequest,
    VolumeCreateRequest,
    VolumeEntryModel,
    VolumeInfoModel,
    VolumeListdirResponse,
    VolumeListResponse,
    VolumeReadRequest,
    VolumeReadResponse,
    VolumeRemoveRequest,
    VolumeWriteRequest,
)
from rayfn_service.api.routes import _errors, registry

router = APIRouter(prefix="/v1/volumes")

Name = Annotated[str, Path(description="The volume's name", max_length=100)]


def _name(name: str) -> str:
    return validate_name("volume", name)


@router.get("", response_model=VolumeListResponse, responses=_errors(),
            summary="Every volume, by name")
async def list_volumes(request: Request) -> VolumeListResponse:
    found = await registry(request).call(RegistryApi.volume_list)
    return VolumeListResponse(volumes=[VolumeInfoModel(name=v.name, created_at=v.created_at)
                                       for v in found])


@router.post("/{name}", response_model=VolumeInfoModel, responses=_errors(409),
             summary="Make an empty volume (an error if there is one, unless `exist_ok`)")
async def create_volume(request: Request, name: Name, body: VolumeCreateRequest
                        ) -> VolumeInfoModel:
    info = await registry(request).call(RegistryApi.volume_create, _name(name),
                                        body.exist_ok)
    return VolumeInfoModel(name=info.name, created_at=info.created_at)


@router.delete("/{name}", status_code=204, responses=_errors(404),
               summary="Delete a volume and every file in it")
async def delete_volume(request: Request, name: Name) -> Response:
    await registry(request).call(RegistryApi.volume_delete, _name(name))
    return Response(status_code=204)


@router.get("/{name}/files", response_model=VolumeListdirResponse, responses=_errors(404),
            summary="The entries of a directory of the volume")
async def listdir(request: Request, name: Name,
                  path: Annotated[str, Query(max_length=MAX_PATH_CHARS)] = "",
                  recursive: bool = False) -> VolumeListdirResponse:
    entries = await registry(request).call(RegistryApi.volume_listdir, _name(name), path,
                                           recursive)
    return VolumeListdirResponse(entries=[
        VolumeEntryModel(path=e.path, type=e.type, size=e.size, mtime=e.mtime)
        for e in entries])


@router.post("/{name}/read", response_model=VolumeReadResponse, responses=_errors(404),
             summary=f"Up to `length` bytes (at most {MAX_CHUNK_BYTES}) of a file")
async def read(request: Request, name: Name, body: VolumeReadRequest) -> VolumeReadResponse:
    data = await registry(request).call(RegistryApi.volume_read, _name(name), body.path,
                                        body.offset, body.length)
    return VolumeReadResponse(data=data)


@router.post("/{name}/write", status_code=204, responses=_errors(404),
             summary="A chunk of a file; with `final` the file appears whole")
async def write(request: Request, name: Name, body: VolumeWriteRequest) -> Response:
    if len(body.data) > MAX_CHUNK_BYTES:
        raise InvalidError(f"a chunk is at most {MAX_CHUNK_BYTES} bytes")
    await registry(request).call(RegistryApi.volume_write, _name(name), body.path,
                                 body.upload, body.offset, body.data, body.final)
    return Response(status_code=204)


@router.post("/{name}/remove", status_code=204, responses=_errors(404),
             summary="Remove a file, or a directory (`recursive` if not empty)")
async def remove(request: Request, name: Name, body: VolumeRemoveRequest) -> Response:
    await registry(request).call(RegistryApi.volume_remove, _name(name), body.path,
                                 body.recursive)
    return Response(status_code=204)


@router.post("/{name}/copy", status_code=204, responses=_errors(404),
             summary="Copy files or directories within the volume")
async def copy(request: Request, name: Name, body: VolumeCopyRequest) -> Response:
    await registry(request).call(RegistryApi.volume_copy, _name(name), body.sources,
                                 body.dest)
    return Response(status_code=204)
