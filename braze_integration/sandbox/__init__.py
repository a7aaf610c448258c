"""A local Braze `POST /users/track` sandbox: pure standard library, no Django, no database.

Start it from Python (`SandboxServer(SandboxConfig(api_keys={"key"})).start()`), from the shell
(`python -m braze_integration.sandbox --api-key key`) or through Django
(`python manage.py braze_sandbox --api-key key`).
"""

from .config import FaultConfig, SandboxConfig, parse_rate_limit
from .server import SandboxServer

__all__ = ["FaultConfig", "SandboxConfig", "SandboxServer", "parse_rate_limit"]
