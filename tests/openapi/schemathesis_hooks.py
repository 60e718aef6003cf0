"""schemathesis hooks for tests/openapi.rs (loaded through SCHEMATHESIS_HOOKS).

1. Loopback only. Creating a pull, a push or a load test makes the server connect to the URL in
   the body, and generated URLs name arbitrary hosts. Right before each request, every string
   with a ':' in a JSON body gets its host replaced by 127.0.0.1:9, where nothing listens (the
   scheme and the rest of the URL are kept, so the server's URL checks still see generated
   schemes and paths). Load tests are cut to at most 3 sessions for at most 2 seconds (larger
   counts and durations the server refuses stay as they are).
2. SDP bodies (WHIP/WHEP offers, trickle fragments) are sent as the generated text.
3. Deliberate 5xx. A 503 (the WebRTC engine is off; an HLS part not produced in time, RFC 8216bis
   6.2.5.2) or a 508 (an origin loop in Switchyard-Via) that the operation's description
   declares, answered as our JSON error, is the API doing what it says, not a server error. Any
   other 5xx fails the run.
"""

import json
import re
import urllib.parse

import schemathesis

LOOPBACK = "127.0.0.1:9"
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Most sessions and seconds a generated load test may run (the server's own limits are higher).
MAX_SESSIONS = 3
MAX_SECONDS = 2
LOAD_TEST_MAX_SESSIONS = 20_000
LOAD_TEST_MAX_SECONDS = 24 * 3600
DELIBERATE = {503, 508}


def to_loopback(value: str) -> str:
    scheme, _, rest = value.partition(":")
    if not SCHEME.fullmatch(scheme):
        scheme = "x"
    # Drop what could be an authority (anything up to the first '/', '?' or '#' after the
    # slashes), keep the rest, percent-encoded so no parser finds another host in it.
    rest = rest.lstrip("/\\")
    tail = re.split(r"[/?#\\]", rest, maxsplit=1)
    tail = tail[1] if len(tail) > 1 else ""
    return f"{scheme}://{LOOPBACK}/" + urllib.parse.quote(tail, safe="/?=&._-~")


def loopback_only(body):
    if isinstance(body, dict):
        return {key: loopback_only(value) for key, value in body.items()}
    if isinstance(body, list):
        return [loopback_only(value) for value in body]
    if isinstance(body, str) and ":" in body:
        return to_loopback(body)
    return body


def small_load_test(body):
    if not isinstance(body, dict) or "target" not in body:
        return body
    sessions = body.get("sessions")
    if isinstance(sessions, int) and not isinstance(sessions, bool):
        if MAX_SESSIONS < sessions <= LOAD_TEST_MAX_SESSIONS:
            body["sessions"] = MAX_SESSIONS
    seconds = body.get("duration_secs")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        if MAX_SECONDS < seconds <= LOAD_TEST_MAX_SECONDS:
            body["duration_secs"] = MAX_SECONDS
    return body


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def sdp_text(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode("utf-8")


@schemathesis.hook
def before_call(context, case, kwargs):
    if isinstance(case.body, (dict, list)):
        case.body = small_load_test(loopback_only(case.body))


@schemathesis.hook
def filter_failure(context, failure, case, response):
    status = getattr(failure, "status_code", None)
    if status not in DELIBERATE:
        return True
    declared = case.operation.definition.raw.get("responses", {})
    try:
        is_json_error = "error" in response.json()
    except Exception:
        is_json_error = False
    # Keep (fail on) it unless it is declared and our JSON error.
    return not (str(status) in declared and is_json_error)
