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

from rayfn import exception, experimental, gpu
from rayfn._client import connect
from rayfn.app import App
from rayfn.call import FunctionCall
from rayfn.call_context import current_function_call_id, current_input_id, interact, is_local
from rayfn.cloud_bucket_mount import CloudBucketMount
from rayfn.cls import Cls, parameter
from rayfn.dict import Dict
from rayfn.exception import Error
from rayfn.file_pattern_matcher import FilePatternMatcher
from rayfn.function import Function
from rayfn.image import Image
from rayfn.network_file_system import NetworkFileSystem
from rayfn.options import Retries
from rayfn.output import enable_output
from rayfn.partial_function import batched, concurrent, enter, exit, method
from rayfn.proxy import Proxy
from rayfn.queue import Queue
from rayfn.sandbox import Sandbox, SandboxSnapshot
from rayfn.schedule import Cron, Period
from rayfn.scheduler_placement import SchedulerPlacement
from rayfn.schemas import CallStatus
from rayfn.secret import Secret
from rayfn.states import CallState
from rayfn.tunnel import Tunnel, forward
from rayfn.volume import FileEntry, FileEntryType, Volume
from rayfn.web import asgi_app, fastapi_endpoint, web_endpoint, web_server, wsgi_app

__version__ = "0.1.0"

__all__ = [
    "App",
    "CallState",
    "CallStatus",
    "CloudBucketMount",
    "Cls",
    "Cron",
    "Dict",
    "Error",
    "FileEntry",
    "FileEntryType",
    "FilePatternMatcher",
    "Function",
    "FunctionCall",
    "Image",
    "NetworkFileSystem",
    "Period",
    "Proxy",
    "Queue",
    "Retries",
    "Sandbox",
    "Secret",
    "SandboxSnapshot",
    "SchedulerPlacement",
    "Tunnel",
    "Volume",
    "asgi_app",
    "batched",
    "concurrent",
    "connect",
    "current_function_call_id",
    "current_input_id",
    "enable_output",
    "enter",
    "exception",
    "exit",
    "experimental",
    "fastapi_endpoint",
    "forward",
    "gpu",
    "interact",
    "is_local",
    "method",
    "parameter",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
