"""One page of a query, newest first, with the total count over all pages."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")


def newest_first(
    session: Session, query: Select[tuple[T]], model: Any, *, limit: int, offset: int
) -> tuple[list[T], int]:
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    ordered = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(ordered)), total
