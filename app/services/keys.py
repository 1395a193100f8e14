"""API keys: random, shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "thaw_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, tenant_name: str) -> str:
    """Create the tenant if new, and a key for it; returns the key (the only time it is seen)."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(name=tenant_name)
        session.add(tenant)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(key)))
    return key


def tenant_for_key(session: Session, *, key: str) -> Tenant | None:
    # The lookup is by hash, so response time says nothing about how close a guess was.
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
    return session.get(Tenant, api_key.tenant_id) if api_key else None


def revoke_key(session: Session, *, key: str) -> bool:
    """Revoke a key at once (its next request is a 401); False when no live key matches."""
    revoked = session.execute(
        update(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    ).rowcount
    return bool(revoked)
