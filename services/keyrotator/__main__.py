"""python -m tokenry.services.keyrotator"""

from tokenry.servicekit.main import main
from tokenry.services.keyrotator import config as rotator_config
from tokenry.services.keyrotator.app import SERVICE_NAMES, build

if __name__ == "__main__":
    # The rotator's own settings are checked with the shared ones: every bad value in one report.
    main("keyrotator", build, SERVICE_NAMES, need_kek=True, options=rotator_config.read)
