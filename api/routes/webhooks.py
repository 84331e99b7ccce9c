"""POST /api/v1/webhooks/mlflow: MLflow's signed deliveries (new versions, alias moves)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from dreamops.api.deps import webhook_receiver
from dreamops.api.schemas import AliasMoveOut, WebhookAck
from dreamops.registry.webhooks import WebhookReceiver, WebhookRejected

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("/mlflow", response_model=WebhookAck)
async def mlflow_webhook(request: Request, receiver: WebhookReceiver = Depends(webhook_receiver)) -> WebhookAck:
    body = await request.body()  # the raw bytes: the signature covers them exactly
    try:
        result = await run_in_threadpool(receiver.handle, dict(request.headers), body)
    except WebhookRejected as exc:
        raise HTTPException(exc.status, exc.reason) from None
    return WebhookAck(delivery_id=result.delivery_id, event=f"{result.entity}.{result.action}", model=result.model,
                      moves=[AliasMoveOut.of(m) for m in result.moves])
