"""Local host for a v2-model Azure Functions app, for development without Core Tools.

Dev only, never deployed. It reads the app's functions from `app.get_functions()` and holds
no application logic: HTTP triggers on uvicorn, timers on their NCRONTAB schedules, and queue
triggers polling Azurite (or any storage account), honouring host.json as the real host does.
"""

from .config import DevHostError, HostConfig, MissingSettingError, QueueOptions
from .functions import FunctionSpec, Invocation
from .host import DevHost
from .loader import load_app
from .timers import Schedule

__all__ = [
    "DevHost",
    "DevHostError",
    "FunctionSpec",
    "HostConfig",
    "Invocation",
    "MissingSettingError",
    "QueueOptions",
    "Schedule",
    "load_app",
]
