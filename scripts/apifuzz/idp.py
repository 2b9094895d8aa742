"""A stand-in identity provider for `scripts/api-fuzz`: an Ed25519 key, its JWKS, and
JWTs minted with it, so the run can act with multi-factor authentication (`amr`), which
the default policy asks for before deploy, retire and revoke.

    idp.py keygen DIR                      writes DIR/idp.key (0600) and DIR/jwks.json
    idp.py mint DIR SUB SCOPE TTL_SECS     prints a JWT (iss/aud as in warden.toml below)
"""

import base64
import json
import os
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ISSUER = "https://idp.api-fuzz.test"
AUDIENCE = "warden"
KID = "api-fuzz"


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def keygen(d: str) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(os.path.join(d, "idp.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": KID, "alg": "EdDSA", "use": "sig"}
    with open(os.path.join(d, "jwks.json"), "w") as f:
        json.dump({"keys": [jwk]}, f)


def mint(d: str, sub: str, scope: str, ttl: int) -> str:
    with open(os.path.join(d, "idp.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    now = int(time.time())
    header = {"alg": "EdDSA", "typ": "JWT", "kid": KID}
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "scope": scope,
        "amr": ["pwd", "mfa"],
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": b64url(os.urandom(12)),
    }
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    return signing_input + "." + b64url(key.sign(signing_input.encode()))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "mint":
        print(mint(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
