from helios.runtime import run
from services.scheduler.service import serve

run("scheduler", serve)
