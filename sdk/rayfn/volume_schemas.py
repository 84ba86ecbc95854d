"""REST bodies of Volumes: the server's request/response models and the HTTP client's.
File bytes cross as base64, at most ``MAX_CHUNK_BYTES`` a request."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from rayfn.protocol.volumes import MAX_CHUNK_BYTES, MAX_PATH_CHARS
from rayfn.schemas import Base64Bytes

__all__ = [
    "VolumeCopyRequest",
    "VolumeCreateRequest",
    "VolumeEntryModel",
    "VolumeInfoModel",
    "VolumeListResponse",
    "VolumeListdirResponse",
    "VolumeReadRequest",
    "VolumeReadResponse",
    "VolumeRemoveRequest",
    "VolumeWriteRequest",
]

VolumePath = Annotated[str, Field(max_length=MAX_PATH_CHARS)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VolumeCreateRequest(_Request):
    exist_ok: bool = False


class VolumeInfoModel(BaseModel):
    name: str
    created_at: float


class VolumeListResponse(BaseModel):
    volumes: list[VolumeInfoModel]


class VolumeEntryModel(BaseModel):
    path: str
    type: str = Field(description="`file` or `dir`")
    size: int
    mtime: float


class VolumeListdirResponse(BaseModel):
    entries: list[VolumeEntryModel]


class VolumeReadRequest(_Request):
    path: VolumePath
    offset: int = Field(0, ge=0)
    length: int = Field(MAX_CHUNK_BYTES, ge=0, le=MAX_CHUNK_BYTES)


class VolumeReadResponse(BaseModel):
    data: Base64Bytes


class VolumeWriteRequest(_Request):
    path: VolumePath
    upload: str = Field(max_length=64, pattern=r"^[A-Za-z0-9]+$",
                        description="An ID the client picks for the file's chunks")
    offset: int = Field(0, ge=0)
    data: Base64Bytes
    final: bool = Field(description="The last chunk: the file replaces `path` whole")


class VolumeRemoveRequest(_Request):
    path: VolumePath
    recursive: bool = False


class VolumeCopyRequest(_Request):
    sources: list[VolumePath] = Field(min_length=1, max_length=1000)
    dest: VolumePath
