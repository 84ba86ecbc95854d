"""rayfn: Modal's job-processing API on any Ray cluster.

import rayfn as modal

app = modal.App("my-job-queue")

@app.function(retries=3, timeout=600)
def process_job(data): ...

call = modal.Function.from_name("my-job-queue", "process_job").spawn("data")
modal.FunctionCall.from_id(call.object_id).get(timeout=5)

@app.function()
@modal.asgi_app()   # a web endpoint: `rayfn serve FILE` here, `rayfn deploy FILE` on Ray Serve
def web(): return fastapi_app
"""

from rayfn import exception
from rayfn._client import connect
from rayfn.app import App
from rayfn.call import FunctionCall
from rayfn.cls import Cls, parameter
from rayfn.function import Function
from rayfn.image import Image
from rayfn.options import Retries
from rayfn.partial_function import batched, concurrent, enter, exit, method
from rayfn.schedule import Cron, Period
from rayfn.schemas import CallStatus
from rayfn.states import CallState
from rayfn.web import asgi_app

__all__ = [
    "App",
    "CallState",
    "CallStatus",
    "Cls",
    "Cron",
    "Function",
    "FunctionCall",
    "Image",
    "Period",
    "Retries",
    "asgi_app",
    "batched",
    "concurrent",
    "connect",
    "enter",
    "exception",
    "exit",
    "method",
    "parameter",
]
