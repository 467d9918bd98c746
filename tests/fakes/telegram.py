"""A loopback fake of the Telegram Bot API: the updates a test queues come back from getUpdates (once each,
honouring the offset); every other method is recorded with its parameters and answered as the API would."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "123456:TEST-token-for-the-fake-bot-api-0000"


class FakeTelegram:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._next_id = 1
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = {}
                    for k, v in parse_qs(raw).items():
                        try:
                            params[k] = json.loads(v[0])
                        except ValueError:
                            params[k] = v[0]
                token, _, method = self.path.removeprefix("/bot").partition("/")
                status, body = owner.respond(token, method, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- what a test does ---------------------------------------------------------------------------

    def _add(self, update: dict[str, Any]) -> None:
        with self._lock:
            update["update_id"] = self._next_id
            self._next_id += 1
            self.updates.append(update)

    def send_command(self, chat_id: int, text: str) -> None:
        chat = {"id": chat_id, "type": "private"}
        self._add({"message": {"message_id": self._next_id, "date": 0, "chat": chat, "text": text,
                               "from": {"id": chat_id, "is_bot": False, "first_name": "u"}}})  # fmt: skip

    def press(self, chat_id: int, data: str) -> None:
        chat = {"id": chat_id, "type": "private"}
        user = {"id": chat_id, "is_bot": False, "first_name": "u"}
        message = {"message_id": 1, "date": 0, "chat": chat, "text": "confirm?"}
        self._add({"callback_query": {"id": str(self._next_id), "from": user, "chat_instance": "c",
                                      "message": message, "data": data}})  # fmt: skip

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == "sendMessage" and (chat_id is None or p["chat_id"] == chat_id)]

    # ---- the API -----------------------------------------------------------------------------------------

    def respond(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if token != TOKEN:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        with self._lock:
            if method == "getUpdates":
                offset = int(params.get("offset") or 0)
                return 200, {"ok": True, "result": [u for u in self.updates if u["update_id"] >= offset]}
            self.calls.append((method, params))
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "bot", "username": "t_bot"}}
        if method == "sendMessage":
            chat = {"id": int(params["chat_id"]), "type": "private"}
            return 200, {"ok": True, "result": {"message_id": 99, "date": 0, "chat": chat, "text": params["text"]}}
        return 200, {"ok": True, "result": True}
