"""Modal's ``modal.functions`` module: ``from rayfn.functions import FunctionCall``."""

from rayfn.call import FunctionCall
from rayfn.function import Function

__all__ = ["Function", "FunctionCall"]
