"""Social login: OAuth 2.0 and OpenID Connect providers (SPEC §12)."""
