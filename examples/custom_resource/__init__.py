"""A resource of your own (notes) next to starterkit's tables, with its own migration branch.

- ``models.py``: ``Note`` subclasses ``starterkit.Base``, so it shares the metadata.
- ``migrations/versions/``: its revisions, on the branch label ``notes``.
- ``app.py``: the service plus ``/api/v1/notes``, owned per user.
"""
