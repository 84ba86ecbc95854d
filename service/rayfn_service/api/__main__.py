"""Run the REST server: ``python -m rayfn_service.api`` (``rayfn start`` does this)."""

from __future__ import annotations

import logging

import uvicorn

from rayfn.network import is_loopback
from rayfn.settings import get_settings
from rayfn_service.api.app import create_app
from rayfn_service.api.connections import server_options
from rayfn_service.launch import connect_driver
from rayfn_service.ray_head import HeadInfo

logger = logging.getLogger("rayfn.server")


def warn_if_exposed(host: str) -> bool:
    """Warn when the server will be reachable from other machines; True if it will."""
    if is_loopback(host):
        return False
    logger.warning("the REST server listens on %s, beyond this machine; anyone who has "
                   "the token can deploy and run code on the cluster", host)
    return True


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    warn_if_exposed(settings.server_host)
    info = HeadInfo.load(settings)
    address = settings.address or (info.address if info else "auto")
    connect_driver(address, settings, log_to_driver=False)
    uvicorn.run(create_app(settings), **server_options(settings), log_level="info",
                access_log=False)


if __name__ == "__main__":
    main()
