"""python -m tokenry.services.keyrotator"""

from tokenry.servicekit.main import main
from tokenry.services.keyrotator.app import SERVICE_NAMES, build

if __name__ == "__main__":
    main("keyrotator", build, SERVICE_NAMES, need_kek=True)
