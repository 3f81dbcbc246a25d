"""Schemathesis hooks for the export API's contract test.

Every request is signed with AWS SigV4 (service `execute-api`) as it leaves: the signature
covers the final URL, headers and body, so it is computed by a `requests` auth object, which
runs after the request is prepared. Every answer is logged (method, route, status) for the
test to read: the figures, and proof that the signing worked on every route.
"""

import json
import os
import urllib.parse

import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Headers this hook writes; any the case carries are replaced, never signed.
_SIGNATURE_HEADERS = {"authorization", "x-amz-date", "x-amz-security-token"}

# The headers signed besides `host`: the ones the API reads. Headers schemathesis invents are
# sent unsigned, as SigV4 allows, so that they reach the routes: signers disagree on values
# holding a tab (botocore folds it into a space, the Rust SDK and so the local gateway keep
# it), and such a header would only ever be answered 403.
_SIGNED = {
    "content-type",
    "idempotency-key",
    "if-none-match",
    "cache-control",
    "accept",
    "requestid",
    "type",
}


class SigV4(requests.auth.AuthBase):
    def __init__(self):
        self.credentials = Credentials(
            os.environ["CONTRACT_ACCESS_KEY_ID"], os.environ["CONTRACT_SECRET_ACCESS_KEY"]
        )
        self.region = os.environ.get("CONTRACT_REGION", "us-east-1")

    def __call__(self, request):
        # requests writes a space in the query string as `+`; SigV4's canonical query string
        # has `%20`, and botocore signs the query string as it finds it. A `+` the caller
        # meant is already `%2B`, so every `+` left is a space.
        scheme, netloc, path, query, fragment = urllib.parse.urlsplit(request.url)
        if "+" in query:
            request.url = urllib.parse.urlunsplit(
                (scheme, netloc, path, query.replace("+", "%20"), fragment)
            )
        for name in list(request.headers):
            if name.lower() in _SIGNATURE_HEADERS:
                del request.headers[name]
        signed = AWSRequest(
            method=request.method,
            url=request.url,
            data=request.body or b"",
            headers={k: v for k, v in request.headers.items() if k.lower() in _SIGNED},
        )
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(signed)
        request.headers["Authorization"] = signed.headers["Authorization"]
        request.headers["X-Amz-Date"] = signed.headers["X-Amz-Date"]
        return request


_SIGNER = SigV4()
_LOG = os.environ.get("CONTRACT_LOG")


@schemathesis.hook
def before_call(context, case, kwargs):
    kwargs["auth"] = _SIGNER


@schemathesis.hook
def after_call(context, case, response):
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as log:
            line = {
                "method": case.operation.method.upper(),
                "path": case.operation.path,
                "status": response.status_code,
            }
            if response.status_code == 403:
                # A signature refused: what was sent, and why, for the test's report.
                line["url"] = response.request.url
                line["answer"] = response.text[:300]
                line["headers"] = {k: v for k, v in response.request.headers.items()}
                line["body"] = repr(response.request.body)[:200]
            log.write(json.dumps(line) + "\n")
