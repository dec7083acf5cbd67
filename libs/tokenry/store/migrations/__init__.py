"""The SQL migrations, ``NNNN_name.sql``: data files read by :mod:`tokenry.store.migrate`.

A package (not a bare folder) so that setuptools lists it in ``packages`` and every wheel ships
the ``*.sql`` files (tests/e2e/test_wheel.py installs a built wheel and migrates with it).
"""
