"""The ``rayfn`` command line."""
