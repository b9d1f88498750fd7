#!/usr/bin/env python3
"""A webhook receiver for checks: answers 204 to every POST and appends each
delivery as it came ({"headers": {...}, "body": "<raw body>"}) to a JSON-lines
file, to be verified afterwards (scripts/verify-webhooks.py).

    python3 scripts/webhook-receiver.py <port> <out.jsonl>
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode("utf-8")
        headers = {k.lower(): v for k, v in self.headers.items()}
        with open(sys.argv[2], "a", encoding="utf-8") as out:
            out.write(json.dumps({"headers": headers, "body": body}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
