"""Ed25519 signing of content digests."""

from __future__ import annotations

import base64
import hashlib

import pytest

from keel.exceptions import IntegrityError, InvalidSpecError
from keel.models import (
    SignatureVerificationError,
    generate_signing_key,
    key_fingerprint,
    sign_digest,
    verify_digest,
)

DIGEST = hashlib.sha256(b"manifest").hexdigest()


def test_sign_and_verify() -> None:
    private, public = generate_signing_key()
    assert private.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")
    sig = sign_digest(DIGEST, private)
    verify_digest(DIGEST, sig, [public])
    _, other = generate_signing_key()
    verify_digest(DIGEST, sig, [other, public])  # any trusted key may verify
    assert len(key_fingerprint(public)) == 16 and key_fingerprint(public) != key_fingerprint(other)


def test_wrong_key_and_tampering_fail() -> None:
    assert issubclass(SignatureVerificationError, IntegrityError)
    private, public = generate_signing_key()
    _, other = generate_signing_key()
    sig = sign_digest(DIGEST, private)
    with pytest.raises(SignatureVerificationError, match=key_fingerprint(other)):
        verify_digest(DIGEST, sig, [other])
    tampered = hashlib.sha256(b"manifest2").hexdigest()
    with pytest.raises(SignatureVerificationError, match="No trusted key"):
        verify_digest(tampered, sig, [public])
    raw = bytearray(base64.b64decode(sig))
    raw[0] ^= 1
    forged = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureVerificationError):
        verify_digest(DIGEST, forged, [public])
    with pytest.raises(SignatureVerificationError, match="base64"):
        verify_digest(DIGEST, "not base64!", [public])
    with pytest.raises(SignatureVerificationError, match="0 key"):
        verify_digest(DIGEST, sig, [])


def test_bad_keys_are_spec_errors() -> None:
    private, public = generate_signing_key()
    with pytest.raises(InvalidSpecError, match="private key"):
        sign_digest(DIGEST, public)
    with pytest.raises(InvalidSpecError, match="public key"):
        verify_digest(DIGEST, sign_digest(DIGEST, private), [b"garbage"])
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidSpecError, match="Ed25519"):
        sign_digest(DIGEST, ec_pem)
