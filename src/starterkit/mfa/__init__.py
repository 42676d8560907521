"""Multi-factor login: TOTP and recovery codes, the two-step login, and step-up."""
