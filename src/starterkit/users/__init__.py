"""Accounts: schemas, service and (with the auth issue) routers."""
