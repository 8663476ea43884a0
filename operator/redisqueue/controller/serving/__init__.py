"""The HTTP face: health and metrics (aiohttp), shared by the operator and dev mode."""
