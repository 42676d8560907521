"""The whole service from settings: ``uvicorn examples.minimal_app:app``.

Settings come from ``STARTERKIT_*`` variables and ``.env``; run ``starterkit migrate`` (or
``starterkit serve`` once) first so the database has its tables.
"""

from starterkit import create_app

app = create_app()
