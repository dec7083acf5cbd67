"""python -m tokenry.services.revocation"""

from tokenry.servicekit.main import main
from tokenry.services.revocation.app import SERVICE_NAMES, build

if __name__ == "__main__":
    main("revocation", build, SERVICE_NAMES)
