"""A small v2-model FunctionApp for devhost tests: every trigger kind, no application logic.

Functions record what they received in CALLS so tests can assert on exactly what the host
passed in; tests clear it between runs.
"""

from __future__ import annotations

import json
from collections import defaultdict

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

CALLS: dict[str, list[dict]] = defaultdict(list)


def _json(payload: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, mimetype="application/json")


@app.route(route="admin/mailboxes/{mailbox_id}", methods=["GET"])
def get_mailbox(req: func.HttpRequest) -> func.HttpResponse:
    return _json(
        {
            "method": req.method,
            "route": dict(req.route_params),
            "params": dict(req.params),
            "url": req.url,
            "header": req.headers.get("x-test"),
        }
    )


@app.route(route="admin/mailboxes/{mailbox_id}", methods=["POST"], auth_level="anonymous")
async def post_mailbox(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    CALLS["post_mailbox"].append({"body": req.get_body(), "id": context.invocation_id})
    return func.HttpResponse(
        req.get_body(),
        status_code=201,
        headers={"X-Function": context.function_name, "Set-Cookie": "a=1"},
        mimetype=req.headers.get("content-type", "application/octet-stream"),
    )


@app.route(route="admin/mailboxes/special", methods=["GET"])
def special_mailbox(req: func.HttpRequest) -> str:
    return "literal wins"


@app.route(route="items/{id:guid}", methods=["GET"])
def item_by_guid(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"id": req.route_params["id"]})


@app.route(route="files/{*rest}")
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"rest": req.route_params.get("rest"), "method": req.method})


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.function_name("renamed")
@app.route(route="no-content", methods=["DELETE"])
def deleting(req: func.HttpRequest) -> None:
    return None


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    CALLS["tick"].append({"past_due": timer.past_due, "status": timer.schedule_status})


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%SAMPLE_OUT_QUEUE%", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage, out: func.Out[str]) -> None:
    CALLS["on_message"].append(
        {
            "id": msg.id,
            "body": msg.get_body(),
            "dequeue_count": msg.dequeue_count,
            "insertion_time": msg.insertion_time,
            "pop_receipt": msg.pop_receipt,
        }
    )
    out.set(json.dumps({"seen": msg.get_body().decode()}))


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_OUT_QUEUE%", connection="")
async def on_output(msg: func.QueueMessage) -> None:
    CALLS["on_output"].append({"body": msg.get_body()})


@app.queue_trigger(
    arg_name="msg", queue_name="%SAMPLE_FAIL_QUEUE%", connection="AzureWebJobsStorage"
)
async def always_fails(msg: func.QueueMessage) -> None:
    CALLS["always_fails"].append({"dequeue_count": msg.dequeue_count})
    raise ValueError("cannot handle this message")
