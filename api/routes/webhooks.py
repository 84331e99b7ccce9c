"""POST /api/v1/webhooks/mlflow: MLflow's signed deliveries (new versions, alias moves). A `canary`
alias set in the MLflow UI, once accepted by the promotion rules, starts a staged rollout."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from dreamops.api import canary
from dreamops.api.deps import db, promotions, webhook_receiver
from dreamops.api.schemas import AliasMoveOut, WebhookAck
from dreamops.families import DEFAULT_FAMILY
from dreamops.registry.webhooks import WebhookReceiver, WebhookRejected

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
_HEADER = {"in": "header", "required": True, "schema": {"type": "string"}}
# the route reads the raw body (the signature covers its exact bytes), so FastAPI cannot describe it
DELIVERY = {
    "parameters": [{**_HEADER, "name": "X-MLflow-Signature", "description": "v1,<base64 HMAC-SHA256>"},
                   {**_HEADER, "name": "X-MLflow-Timestamp", "description": "unix seconds"},
                   {**_HEADER, "name": "X-MLflow-Delivery-Id"}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["entity", "action", "data"],
        "properties": {"entity": {"type": "string"}, "action": {"type": "string"},
                       "data": {"type": "object", "description": "the MLflow entity; `name` is the model"}},
        "example": {"entity": "model_version_alias", "action": "created",
                    "data": {"name": DEFAULT_FAMILY, "alias": "canary", "version": "2"}}}}}},
}


@router.post("/mlflow", response_model=WebhookAck, openapi_extra=DELIVERY)
async def mlflow_webhook(request: Request, receiver: WebhookReceiver = Depends(webhook_receiver),
                         session: Session = Depends(db)) -> WebhookAck:
    body = await request.body()  # the raw bytes: the signature covers them exactly
    try:
        result = await run_in_threadpool(receiver.handle, dict(request.headers), body)
    except WebhookRejected as exc:
        raise HTTPException(exc.status, exc.reason) from None
    deployments = []
    for move in result.moves:
        if move.alias == "canary" and move.outcome == "applied" and move.to_version:
            deployments.append(await run_in_threadpool(_start_rollout, session, move.model, move.to_version))
    return WebhookAck(delivery_id=result.delivery_id, event=f"{result.entity}.{result.action}", model=result.model,
                      moves=[AliasMoveOut.of(m) for m in result.moves], deployments=[d for d in deployments if d])


def _start_rollout(session: Session, model: str, version: str) -> str | None:
    deployment = canary.start_from_alias(session, promotions(), model, version)
    return deployment.id if deployment else None
