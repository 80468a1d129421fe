from helios.runtime import run
from services.api.service import serve

run("api", serve)
