"""Verifies the gateway's x-session-signature in a Python origin (standard library only).

Copy verify_gateway into your app; call it before trusting any x-session-* header.
With WSGI, pass environ["REQUEST_METHOD"], the raw path and query (e.g. gunicorn's
environ["RAW_URI"]; not PATH_INFO, which is decoded) and the headers with lower-case names.
"""

import hashlib
import hmac
import json
import re
import sys
import time


def verify_gateway(secret, method, path, headers, window_secs=60):
    """True when the request came through the gateway unchanged.

    headers: a dict of lower-case header names to values (str, or a list of str).
    """
    m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", headers.get("x-session-signature", ""))
    if not m:
        return False
    t = int(m.group(1))
    if abs(time.time() - t) > window_secs:
        return False
    text = f"edge-session-v1\n{method}\n{path}\n{t}\n"
    for name in sorted(headers):
        if name.replace("_", "-").startswith("x-session-") and name != "x-session-signature":
            value = headers[name]
            text += f"{name}:{', '.join(value) if isinstance(value, list) else value}\n"
    expected = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, m.group(2))


if __name__ == "__main__":
    # `python3 verify.py` reads {secret, method, path, headers} as JSON on stdin
    # and exits 0 when the signature verifies (the project's tests use this).
    request = json.load(sys.stdin)
    ok = verify_gateway(request["secret"], request["method"], request["path"], request["headers"])
    sys.exit(0 if ok else 1)
