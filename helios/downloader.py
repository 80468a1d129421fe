"""`python -m helios.downloader`: the init container that fills /artifacts.

Reads HELIOS_INPUT_ARTIFACTS, HELIOS_ARTIFACTS_DIR, HELIOS_CACHE_* and HELIOS_S3_*;
the logic lives in `helios.artifacts` (see `helios.artifacts.cli`).
"""

import sys

from helios.artifacts.cli import downloader_main

if __name__ == "__main__":
    sys.exit(downloader_main())
