"""The verifier's errors: the token-validation tree of :mod:`tokenry.jose.errors`, re-exported.

One tree serves the JOSE core, the verifier and the services (drawn in :mod:`tokenry.jose.errors`);
this module lets verifier users import it from the package they use. Its ``__all__`` is the JOSE
module's own, so the two cannot drift apart.
"""

from tokenry.jose import errors as _errors
from tokenry.jose.errors import *  # noqa: F403 - the whole tree, re-exported

__all__ = _errors.__all__
