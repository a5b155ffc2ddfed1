"""A fake LLM provider for the example: an HTTP server on localhost that limits requests and
tokens per second in sliding one-second windows, as real providers limit per minute, and answers
429 with Retry-After above them. Deterministic: a prompt's reply and its token count follow from
the request alone. Standard library only.

    python -m examples.llm.provider --port 8700 --rps 20 --tps 2000
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WINDOW = 1.0
"""Seconds of the sliding windows."""


class Budget:
    """Requests and tokens in the last WINDOW seconds, by the server's own clock."""

    def __init__(self, requests: int, tokens: int) -> None:
        self.requests = requests
        self.tokens = tokens
        self.lock = threading.Lock()
        self.recent: collections.deque[tuple[float, int]] = collections.deque()
        self.served = 0
        self.refused = 0

    def take(self, tokens: int) -> float | None:
        """None if a request of `tokens` fits now (and counts it), else seconds to wait."""
        with self.lock:
            now = time.monotonic()
            while self.recent and self.recent[0][0] <= now - WINDOW:
                self.recent.popleft()
            used = sum(spent for _, spent in self.recent)
            if len(self.recent) < self.requests and used + tokens <= self.tokens:
                self.recent.append((now, tokens))
                self.served += 1
                return None
            self.refused += 1
            return max(self.recent[0][0] + WINDOW - now, 0.05) if self.recent else WINDOW

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"served": self.served, "refused": self.refused}


def usage(prompt: str, max_tokens: int) -> int:
    """Tokens a reply uses: from the prompt alone, below max_tokens."""
    return max(1, min(max_tokens, 10 + sum(map(ord, prompt)) % max(max_tokens - 10, 1)))


def handler_for(budget: Budget) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, budget.stats())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            prompt, max_tokens = str(request.get("prompt", "")), int(request.get("max_tokens", 100))
            tokens = usage(prompt, max_tokens)
            wait = budget.take(tokens)
            if wait is not None:
                retry_after = f"{math.ceil(wait * 10) / 10:.1f}"
                self._send(429, {"error": "rate limited"}, {"Retry-After": retry_after})
                return
            self._send(200, {"text": prompt[::-1], "usage": {"total_tokens": tokens}})

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


class Server(ThreadingHTTPServer):
    # A burst of connections beyond the listen backlog (socketserver's default is 5) has its
    # SYNs dropped, and the clients send them again a second later: requests that started
    # together would then arrive a window apart.
    request_queue_size = 128


def serve(port: int, requests: int, tokens: int) -> tuple[ThreadingHTTPServer, Budget]:
    """Start the provider on 127.0.0.1:`port` (0: a free port) in a daemon thread."""
    budget = Budget(requests, tokens)
    server = Server(("127.0.0.1", port), handler_for(budget))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--rps", type=int, default=20, help="requests per second")
    parser.add_argument("--tps", type=int, default=2000, help="tokens per second")
    arguments = parser.parse_args()
    server, _ = serve(arguments.port, arguments.rps, arguments.tps)
    print(f"fake provider on http://127.0.0.1:{server.server_port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
