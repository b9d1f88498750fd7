#!/usr/bin/env python3
"""Verifies webhook deliveries with the Standard Webhooks reference library.

Reads JSON lines on stdin, one per delivery as a receiver got it:
{"secret": "whsec_...", "headers": {"webhook-id": ...}, "body": "<raw body>"}
and prints the verified event ids in order. Exits 1 at the first delivery
the library refuses (bad signature, stale timestamp, missing header).
"""
import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        delivery = json.loads(line)
        try:
            event = Webhook(delivery["secret"]).verify(delivery["body"], delivery["headers"])
        except Exception as error:  # the library raises WebhookVerificationError
            print(f"delivery {number} refused: {error}", file=sys.stderr)
            return 1
        print(event["id"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
