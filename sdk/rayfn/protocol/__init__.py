"""The contract between the SDK and the service, public and typed; both sides import it.

- ``operations``: the registry's operations, declared once (:class:`RegistryApi`).
- ``actor``: the one adapter from a typed operation to a Ray actor call.
- ``retry``: the one way every client retries a transient failure.
- ``records``: the records that cross process boundaries (frozen dataclasses).
- ``payload``: how arguments, results and errors travel as bytes.
- ``ids``, ``names``: the validation of call IDs and of app and function names.

Submodules are imported by name (``from rayfn.protocol.records import TaskSpec``), so
that a client over HTTP never imports Ray.
"""

__all__ = ["actor", "ids", "names", "operations", "payload", "records", "retry"]
