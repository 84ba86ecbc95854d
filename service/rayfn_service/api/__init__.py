"""The REST server: FastAPI routes over the registry actor."""
