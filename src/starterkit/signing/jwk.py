"""Key pairs for the asymmetric JWT algorithms, as PEM for storage and JWK for publication.

``kid`` is the key's RFC 7638 thumbprint: SHA-256 over the JWK's required members in
lexicographic order without whitespace, base64url. Anyone holding the public key can compute
it, and two different keys never share one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AsymmetricAlgorithm = Literal["EdDSA", "ES256", "RS256"]
ASYMMETRIC_ALGORITHMS: tuple[AsymmetricAlgorithm, ...] = ("EdDSA", "ES256", "RS256")
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
RSA_BITS = 3072  # NIST SP 800-57: 128-bit security, like Ed25519 and P-256
# The members RFC 7638 §3.2 hashes, per key type.
_THUMBPRINT_MEMBERS = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}


def new_private_key(algorithm: AsymmetricAlgorithm) -> PrivateKey:
    """A fresh key pair for ``algorithm``: Ed25519, P-256 or RSA-3072."""
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def private_pem(key: PrivateKey) -> str:
    """The private key as unencrypted PKCS#8 PEM (encrypt it before storing it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_private_pem(pem: str) -> PrivateKey:
    """The private key of :func:`private_pem`'s text.

    Raises:
        ValueError: not a private key of a supported type.
    """
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, PrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def public_jwk(key: PrivateKey | PublicKey, algorithm: AsymmetricAlgorithm) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` (its thumbprint), ``alg`` and ``use: sig``."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    jwk: dict[str, Any]
    if isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    return {**members, "kid": thumbprint(members), "alg": algorithm, "use": "sig"}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_key_of(jwk: dict[str, Any]) -> PublicKey:
    """The public key object of a JWK made by :func:`public_jwk`."""
    text = json.dumps(jwk)
    loaded: Any
    if jwk["kty"] == "OKP":
        loaded = OKPAlgorithm.from_jwk(text)
    elif jwk["kty"] == "EC":
        loaded = ECAlgorithm.from_jwk(text)
    else:
        loaded = RSAAlgorithm.from_jwk(text)
    if not isinstance(loaded, PublicKey):
        raise ValueError("not a public key")
    return loaded
