"""`python -m braze_integration.sandbox --port 9400 --api-key KEY ...` (see `cli.py`)."""

from .cli import main

main()
