"""python -m tokenry.services.keyrotator"""

import os
import sys

from tokenry.servicekit import config
from tokenry.servicekit.main import main
from tokenry.services.keyrotator import config as rotator_config
from tokenry.services.keyrotator.app import SERVICE_NAMES, build

if __name__ == "__main__":
    # Check the rotator's own settings first, so a bad value is one clear line, not a traceback.
    try:
        rotator_config.load(os.environ, config.load(need_kek=True))
    except config.ConfigError as exc:
        print(f"tokenry-keyrotator: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    main("keyrotator", build, SERVICE_NAMES, need_kek=True)
