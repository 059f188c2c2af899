"""Invitation tokens: random, URL-safe, stored only as a SHA-256 digest."""

import hashlib
import re
import secrets

TOKEN_BYTES = 32  # 256 bits of entropy
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class InvitationTokenGenerator:
    """Make tokens and their digests; the shape of Django's PasswordResetTokenGenerator."""

    def __init__(self, nbytes: int = TOKEN_BYTES) -> None:
        self.nbytes = nbytes

    def make_token(self) -> str:
        return secrets.token_urlsafe(self.nbytes)

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode("ascii")).hexdigest()

    @staticmethod
    def is_well_formed(token: str) -> bool:
        return bool(_TOKEN_RE.fullmatch(token))


invitation_token_generator = InvitationTokenGenerator()
