"""`python -m helios.uploader`: uploads a finished task's declared outputs.

Reads HELIOS_DAG_ID, HELIOS_TASK, HELIOS_OUTPUTS, HELIOS_ARTIFACTS_DIR and HELIOS_S3_*;
the logic lives in `helios.artifacts` (see `helios.artifacts.cli`).
"""

import sys

from helios.artifacts.cli import uploader_main

if __name__ == "__main__":
    sys.exit(uploader_main())
