from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text format), without authentication like /healthz. A plain `def`: the
    scrape reads the database and the broker, in the threadpool."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
