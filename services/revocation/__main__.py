"""python -m tokenry.services.revocation"""

from tokenry.servicekit.main import main
from tokenry.services.revocation.app import SERVICE_NAMES, build
from tokenry.services.revocation.settings import RevocationSettings

if __name__ == "__main__":
    # The revocation tuning is checked with the shared settings: every bad value in one report.
    main("revocation", build, SERVICE_NAMES, options=lambda r, _s: RevocationSettings.read(r))
