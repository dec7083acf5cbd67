"""python -m tokenry.services.issuer"""

from tokenry.servicekit.main import main
from tokenry.services.issuer.app import SERVICE_NAMES, build

if __name__ == "__main__":
    main("issuer", build, SERVICE_NAMES, need_kek=True)
