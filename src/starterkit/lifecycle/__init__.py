"""Account recovery and verification: forgot/reset password and email verification.

``tokens`` makes and reads the signed tokens of mailed links, ``service`` redeems them,
``mail`` composes and sends the mails in background jobs, and ``router`` serves the routes.
"""
