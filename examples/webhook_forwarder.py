"""Forward streamad's ``start`` alerts from Kafka to a webhook (an example consumer; standard library + streamad).

    python examples/webhook_forwarder.py --bootstrap 127.0.0.1:9092 --topic streamad.alerts \\
        --url https://hooks.example.com/streamad --group webhook-forwarder

Each alert whose ``type`` is ``start`` (``--types start,end`` for more) is POSTed as its JSON (the alert schema,
README "Alerts") with ``Content-Type: application/json`` and an ``Idempotency-Key: <event_id>:<type>:<seq>``
header, so the receiver can drop the duplicates that at-least-once delivery allows.

Delivery:

* duplicates on the topic are dropped by :func:`streamad.sinks.kafka.consume_events` (``event_id``, ``type``,
  ``seq``);
* a failed POST (connection refused, timeout, HTTP 5xx, 408, 429) is retried with capped exponential backoff
  (``--backoff`` doubling to ``--backoff-max`` seconds, with jitter) up to ``--max-attempts`` (0 = forever);
  other 4xx answers are permanent: the alert is logged and skipped;
* with ``--group``, a Kafka offset is committed only after its alert was handled, so a forwarder that is killed
  or gives up (exit code 1) resends that alert when it starts again.

``--max-events`` / ``--idle-timeout`` bound a run (scripts, tests); by default it runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from streamad.backoff import backoff_delay
from streamad.sinks.kafka import consume_events

log = logging.getLogger("webhook_forwarder")

RETRYABLE_STATUS = {408, 429}


class DeliveryError(RuntimeError):
    """The webhook did not accept an alert within the allowed attempts."""


def post_json(url: str, event: dict[str, Any], timeout_s: float) -> int:
    """POST ``event`` as JSON to ``url``; the HTTP status (urllib raises ``HTTPError`` for >= 400)."""
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "Idempotency-Key": f"{event['event_id']}:{event['type']}:{event['seq']}",
        "User-Agent": "streamad-webhook-forwarder"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return int(response.status)


def forward(url: str, event: dict[str, Any], *, max_attempts: int = 0, backoff_s: float = 0.5,
            backoff_max_s: float = 30.0, timeout_s: float = 10.0, sleep: Callable[[float], None] = time.sleep,
            post: Callable[[str, dict[str, Any], float], int] = post_json) -> bool:
    """Deliver one alert to ``url``, retrying transient failures with backoff.

    Args:
        url: the webhook.
        event: the alert dict.
        max_attempts: attempts before giving up (0 = retry forever).
        backoff_s, backoff_max_s: first and largest pause between attempts (seconds).
        timeout_s: timeout of one POST (seconds).
        sleep, post: injectable for tests.

    Returns:
        ``True`` when the webhook accepted it (2xx/3xx), ``False`` when it rejected it for good (4xx other than
        408 and 429: resending would not help).

    Raises:
        DeliveryError: still failing after ``max_attempts`` attempts.
    """
    rng = random.Random()
    attempt = 0
    while True:
        attempt += 1
        try:
            post(url, event, timeout_s)
            return True
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500 and e.code not in RETRYABLE_STATUS:
                log.error("webhook rejected alert %s (%s) with HTTP %d; skipped", event["event_id"], event["type"],
                          e.code)
                return False
            reason = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:  # refused, reset, timeout, DNS
            reason = str(getattr(e, "reason", e))
        if max_attempts and attempt >= max_attempts:
            raise DeliveryError(f"{url}: alert {event['event_id']} not delivered after {attempt} attempts "
                                f"(last: {reason})")
        delay = backoff_delay(attempt, backoff_s, backoff_max_s, rng)
        log.warning("webhook POST of alert %s failed (attempt %d: %s); retrying in %.1f s", event["event_id"],
                    attempt, reason, delay)
        sleep(delay)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code (1 when an alert could not be delivered)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True, help="Kafka brokers host:port[,host:port]")
    ap.add_argument("--topic", default="streamad.alerts")
    ap.add_argument("--url", required=True, help="webhook URL")
    ap.add_argument("--group", default=None, help="consumer group (a restarted forwarder resumes where it left)")
    ap.add_argument("--stream", default=None, help="only this stream id's alerts")
    ap.add_argument("--types", default="start", help="comma-separated event types to forward (default: start)")
    ap.add_argument("--max-attempts", type=int, default=0, help="POST attempts per alert (0 = forever)")
    ap.add_argument("--backoff", type=float, default=0.5, help="first retry pause (seconds)")
    ap.add_argument("--backoff-max", type=float, default=30.0, help="largest retry pause (seconds)")
    ap.add_argument("--timeout", type=float, default=10.0, help="timeout of one POST (seconds)")
    ap.add_argument("--max-events", type=int, default=None, help="stop after forwarding this many alerts")
    ap.add_argument("--idle-timeout", type=float, default=None,
                    help="stop when no alert arrived for this many seconds (default: run until Ctrl-C)")
    ap.add_argument("--session-timeout", type=float, default=10.0,
                    help="--group: seconds without heartbeat before the group gives this forwarder's partitions "
                         "to another one (joining takes about half of it on some brokers)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    types = {t.strip() for t in args.types.split(",") if t.strip()}
    forwarded = 0
    events = consume_events(args.bootstrap, args.topic, group_id=args.group, stream=args.stream,
                            from_beginning=True, timeout_s=args.idle_timeout,
                            session_timeout_ms=int(args.session_timeout * 1000),
                            heartbeat_interval_ms=int(args.session_timeout * 1000 / 6))
    try:
        for event in events:
            if event["type"] not in types:
                continue
            if forward(args.url, event, max_attempts=args.max_attempts, backoff_s=args.backoff,
                       backoff_max_s=args.backoff_max, timeout_s=args.timeout):
                forwarded += 1
                log.info("forwarded %s alert %s of %s", event["type"], event["event_id"], event["stream_id"])
            if args.max_events is not None and forwarded >= args.max_events:
                break
    except DeliveryError as e:
        log.error("%s; stopping (the alert is read again on the next start with the same --group)", e)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        events.close()
    log.info("forwarded %d alert(s)", forwarded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
