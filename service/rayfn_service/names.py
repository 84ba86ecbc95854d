"""Names rayfn gives things inside Ray, in one place."""

from rayfn.protocol.names import REGISTRY_ACTOR

__all__ = ["HEAD_NODE_RESOURCE", "REGISTRY_ACTOR"]

HEAD_NODE_RESOURCE = "node:__internal_head__"
