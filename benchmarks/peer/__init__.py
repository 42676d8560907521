"""The peer of ``run.py``'s ``peer`` scenario: fastapi-users 15, served side by side.

``fastapi_users_app.py`` is fastapi-users' documented SQLAlchemy example plus an owned items
list; it runs only in a venv of its own (:mod:`benchmarks.peer.venv`), because fastapi-users
pins versions of SQLAlchemy and email-validator that starterkit's venv does not have.
:mod:`benchmarks.peer.server` builds that venv, serves the app and seeds it for ``run.py``.
"""
