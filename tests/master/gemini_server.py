"""A local Gemini API (``POST /v1beta/models/{model}:generateContent``) for tests.

The real google-genai client talks to it over loopback (``base_url``). It answers queued
``(status, body)`` pairs, repeating the last one, and keeps every request it got, so a
test can assert what the client sent (the JSON schema, the prompt). Recorded answers are
JSON files under ``tests/master/data/gemini/``: the response bodies of generateContent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.servers import serve_app

RECORDED = Path(__file__).parent / "data" / "gemini"

Answer = tuple[int, Any]


@dataclass
class FakeGemini:
    """Answers queued (status, body) pairs; repeats the last one."""

    answers: list[Answer] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        """The ASGI app."""
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/v1beta/models/{model_action}")
        async def generate(model_action: str, request: Request) -> JSONResponse:
            model, _, action = model_action.partition(":")
            if action != "generateContent":
                return JSONResponse({"error": {"code": 404, "message": action}}, 404)
            if not self.answers:
                return JSONResponse({"error": {"code": 500, "message": "no answer queued",
                                               "status": "INTERNAL"}}, 500)
            self.paths.append(model)
            self.requests.append(await request.json())
            status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            headers = {"Retry-After": "0"} if status == 503 else {}
            return JSONResponse(body, status_code=status, headers=headers)

        return app

    def reset(self, *answers: Answer) -> None:
        """Forget past requests; answer ``answers`` from now on."""
        self.answers[:] = list(answers)
        self.requests.clear()
        self.paths.clear()

    def prompt(self, i: int) -> str:
        """The text the client sent in request ``i``."""
        contents = self.requests[i]["contents"]
        return "\n".join(part.get("text", "") for c in contents for part in c.get("parts", []))


@contextmanager
def gemini_server() -> Iterator[tuple[FakeGemini, str]]:
    """A :class:`FakeGemini` served on loopback; yields it and its base URL."""
    fake = FakeGemini()
    with serve_app(fake.app()) as url:
        yield fake, url


def ok_text(text: str) -> Answer:
    """A 200 generateContent answer whose one candidate says ``text``."""
    return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                 "finishReason": "STOP"}]}


def error(code: int, status: str, delay: str | None = None) -> Answer:
    """An API error, with a RetryInfo ``delay`` (``"1.5s"``) when given."""
    details = ([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
               if delay else [])
    return code, {"error": {"code": code, "message": f"fake {status}", "status": status,
                            "details": details}}


def recorded(name: str) -> Answer:
    """The recorded generateContent answer ``data/gemini/NAME.json``."""
    return 200, json.loads((RECORDED / f"{name}.json").read_text("utf-8"))


def recorded_text(name: str) -> str:
    """The text of a recorded answer's first candidate."""
    body = recorded(name)[1]
    return str(body["candidates"][0]["content"]["parts"][0]["text"])
