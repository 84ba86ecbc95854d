"""Modal's ``modal.retries`` module: ``from rayfn.retries import Retries``."""

from rayfn.options import Retries

__all__ = ["Retries"]
