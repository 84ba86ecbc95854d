"""Run the REST server: ``python -m rayfn_service.api`` (``rayfn start`` does this)."""

from __future__ import annotations

import logging

import uvicorn

from rayfn.settings import get_settings
from rayfn_service.api.app import create_app
from rayfn_service.launch import HeadInfo, connect_driver

logger = logging.getLogger("rayfn.server")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    info = HeadInfo.load(settings)
    address = settings.address or (info.address if info else "auto")
    connect_driver(address, settings)
    if settings.server_host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("the REST server listens on %s, beyond this machine; anyone who "
                       "has the token can deploy and run code", settings.server_host)
    uvicorn.run(create_app(settings), host=settings.server_host, port=settings.server_port,
                log_level="info", access_log=False)


if __name__ == "__main__":
    main()
