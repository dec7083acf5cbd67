"""python -m tokenry.services.introspector"""

from tokenry.servicekit.main import main
from tokenry.services.introspector.app import SERVICE_NAMES, build

if __name__ == "__main__":
    main("introspector", build, SERVICE_NAMES)
