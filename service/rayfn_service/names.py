"""Names rayfn gives things inside Ray, in one place."""

REGISTRY_ACTOR = "rayfn-registry"
HEAD_NODE_RESOURCE = "node:__internal_head__"
