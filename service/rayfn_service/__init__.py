"""rayfn's service: the registry actor, its dispatcher, the executor task and the store."""
