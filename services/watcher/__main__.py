from helios.runtime import run
from services.watcher.service import serve

# The local executor spawns a process per attempt: asyncio's loop spawns faster.
run("watcher", serve, fast_loop=lambda settings: settings.executor != "local")
