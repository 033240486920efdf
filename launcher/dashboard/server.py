"""The dashboard's HTTP side (Starlette): two pages, a JSON API they poll, and the actions.
Host calls block, so they run in worker threads; the Monitor answers from its snapshot."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from launcher.errors import NotFoundError, TetherError, UsageError
from launcher.dashboard.actions import ACTIONS, checked_node
from launcher.dashboard.auth import Gate
from launcher.dashboard.data import Monitor

HERE = Path(__file__).resolve().parent
LOG_FILES = ("workload", "setup", "agent")


def _page(name: str, gate: Gate) -> HTMLResponse:
    text = (HERE / "templates" / name).read_text()
    return HTMLResponse(text.replace("{{token}}", html.escape(gate.token)),
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                 "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                 "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"})


def _json(doc: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})


def _error(exc: TetherError) -> JSONResponse:
    status = 404 if isinstance(exc, NotFoundError) else 400 if isinstance(exc, UsageError) else 502
    return _json({"error": exc.line()}, status)


def build_app(monitor: Monitor, gate: Gate) -> Starlette:
    async def guarded(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        return gate.refusal(request) or await call_next(request)

    async def jobs_page(request: Request) -> Response:
        return _page("jobs.html", gate)

    async def job_page(request: Request) -> Response:
        return _page("job.html", gate)

    async def api_jobs(request: Request) -> Response:
        await run_in_threadpool(monitor.wait_first_round, monitor.answer_within_s)
        return _json({"jobs": monitor.job_rows()})

    async def api_job(request: Request) -> Response:
        node = request.query_params.get("node")
        return await _call(lambda j: monitor.job_detail(j, checked_node(node)), request.path_params["job"])

    async def api_log(request: Request) -> Response:
        which = request.query_params.get("file", "workload")
        lines = request.query_params.get("tail", "200")
        node = request.query_params.get("node")
        if which not in LOG_FILES or not lines.isdigit():
            return _json({"error": "file is workload, setup or agent; tail a number"}, 400)
        return await _call(lambda j: {"text": monitor.log_tail(j, which, min(int(lines), 5000), checked_node(node))},
                           request.path_params["job"])

    async def api_backups(request: Request) -> Response:
        node = request.query_params.get("node")
        return await _call(lambda j: {"backups": monitor.backups(j, checked_node(node))}, request.path_params["job"])

    async def api_action(request: Request) -> Response:
        name = request.path_params["action"]
        if name not in ACTIONS:
            return _json({"error": f"no action {name!r}"}, 404)
        try:
            body: Dict[str, Any] = json.loads(await request.body() or b"{}")
        except ValueError:
            return _json({"error": "the body is not JSON"}, 400)
        return await _call(lambda j: ACTIONS[name](monitor, j, body if isinstance(body, dict) else {}),
                           request.path_params["job"])

    routes = [
        Route("/", jobs_page), Route("/job/{job}", job_page),
        Route("/api/jobs", api_jobs), Route("/api/job/{job}", api_job),
        Route("/api/job/{job}/log", api_log), Route("/api/job/{job}/backups", api_backups),
        Route("/api/job/{job}/{action}", api_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guarded)])


async def _call(fn: Callable[[str], Any], job: str) -> JSONResponse:
    try:
        return _json(await run_in_threadpool(fn, job))
    except TetherError as exc:
        return _error(exc)
