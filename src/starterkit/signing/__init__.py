"""Asymmetric signing keys for access tokens: the keys, their states, JWKS and rotation."""
