"""Ed25519 signatures over content digests (e.g. the hash of a model's manifest).

A signature covers the UTF-8 bytes of the digest string exactly as given; keys
are PEM (PKCS#8 private, SubjectPublicKeyInfo public).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Any

from keel.exceptions import InvalidSpecError
from keel.models._errors import SignatureVerificationError, require

__all__ = ["generate_signing_key", "key_fingerprint", "sign_digest", "verify_digest"]


def _serialization() -> Any:
    return require("cryptography.hazmat.primitives.serialization", "to sign models")


def _ed25519() -> Any:
    return require("cryptography.hazmat.primitives.asymmetric.ed25519", "to sign models")


def generate_signing_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as ``(private_pem, public_pem)``; keep the private one secret."""
    ser, ed = _serialization(), _ed25519()
    key = ed.Ed25519PrivateKey.generate()
    private_pem: bytes = key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    public_pem: bytes = key.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _load_public(pem: bytes) -> Any:
    ser, ed = _serialization(), _ed25519()
    try:
        key = ser.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise InvalidSpecError(f"Not a PEM public key: {exc}.") from exc
    if not isinstance(key, ed.Ed25519PublicKey):
        raise InvalidSpecError(f"Expected an Ed25519 public key, got {type(key).__name__}.")
    return key


def key_fingerprint(public_pem: bytes) -> str:
    """A short stable id of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    ser = _serialization()
    raw = _load_public(public_pem).public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_digest(digest: str, private_pem: bytes) -> str:
    """Base64 Ed25519 signature over the UTF-8 bytes of ``digest``."""
    ser, ed = _serialization(), _ed25519()
    if not isinstance(digest, str) or not digest:
        raise InvalidSpecError("The digest to sign must be a non-empty string.")
    try:
        key = ser.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidSpecError(f"Not an unencrypted PEM private key: {exc}.") from exc
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise InvalidSpecError(f"Expected an Ed25519 private key, got {type(key).__name__}.")
    return base64.b64encode(key.sign(digest.encode("utf-8"))).decode("ascii")


def verify_digest(digest: str, signature: str, public_pems: Sequence[bytes]) -> None:
    """Return if any of ``public_pems`` verifies ``signature`` over ``digest``.

    Raises :class:`SignatureVerificationError` otherwise (also for a malformed
    signature or an empty key list) and InvalidSpecError for a malformed key.
    """
    exceptions = require("cryptography.exceptions", "to verify signatures")
    keys = [_load_public(pem) for pem in public_pems]
    tried = [key_fingerprint(pem) for pem in public_pems]
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, AttributeError) as exc:
        raise SignatureVerificationError(
            f"The signature of {digest} is not valid base64.", digest=digest, keys=tried
        ) from exc
    for key in keys:
        try:
            key.verify(raw, digest.encode("utf-8"))
        except exceptions.InvalidSignature:
            continue
        return
    raise SignatureVerificationError(
        f"No trusted key verifies the signature of {digest} "
        f"(tried {len(keys)} key(s){': ' + ', '.join(tried) if tried else ''}). "
        "The content or its signature was altered, or it was signed with an untrusted key.",
        digest=digest,
        keys=tried,
    )
