from helios.runtime import run
from services.watcher.service import serve

run("watcher", serve)
