"""Recoverable keys through the official Python SDK (unkey-py 3.2.2), unmodified.

    recovery.py full   opt in, create, decrypt (getKey, listKeys), verify, reroll, delete, refusals
    recovery.py down   with the vault locked or stopped: recoverable calls fail fast with 503
                       (STRONGBOX_EXPECT_CODE), while verifyKey and plain createKey keep working

Reads STRONGBOX_API_URL, STRONGBOX_ROOT_KEY and STRONGBOX_API_ID (an API without the opt-in).
"""

import json
import os
import sys
import time
import urllib.request

from unkey.py import Unkey, errors
from unkey.py.utils import BackoffStrategy, RetryConfig

URL = os.environ["STRONGBOX_API_URL"]
ROOT = os.environ["STRONGBOX_ROOT_KEY"]
API_ID = os.environ["STRONGBOX_API_ID"]
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"sdk-recovery: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def expect_error(cls, status, fn, what):
    try:
        fn()
    except cls as e:
        check(e.status_code == status, f"{what}: status {e.status_code}")
        return json.loads(e.body)
    except errors.UnkeyError as e:
        check(False, f"{what}: got {type(e).__name__} {e.status_code}: {e.body}")
    check(False, f"{what}: no error raised")


def raw(call, body, root=ROOT):
    """apis.updateApi is Strongbox's extension, so no SDK has it."""
    request = urllib.request.Request(
        f"{URL}/v2/{call}", data=json.dumps(body).encode(), method="POST",
        headers={"authorization": f"Bearer {root}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


# The SDK retries 5xx with backoff by default; with the vault down the server answers at once,
# and retries would only hide that. Callers who want fast failure configure the same.
NO_RETRIES = RetryConfig("none", BackoffStrategy(1, 1, 1, 1), False)

with Unkey(root_key=ROOT, server_url=URL, retry_config=NO_RETRIES) as unkey:
    mode = sys.argv[1]
    if mode == "full":
        # The SDK does not declare 412 for createKey; it raises its base error with the body.
        body = expect_error(errors.UnkeyError, 412, lambda: unkey.keys.create_key(api_id=API_ID, recoverable=True), "no opt-in yet")
        check(body["error"]["code"] == "PRECONDITION_FAILED", "412 PRECONDITION_FAILED")
        raw("apis.updateApi", {"apiId": API_ID, "storeEncryptedKeys": True})
        created = unkey.keys.create_key(api_id=API_ID, prefix="rec", recoverable=True).data
        plain = unkey.keys.create_key(api_id=API_ID).data
        got = unkey.keys.get_key(key_id=created.key_id, decrypt=True).data
        check(got.plaintext == created.key, "getKey decrypt returns the key")
        listed = unkey.apis.list_keys(api_id=API_ID, decrypt=True).result.data
        by_id = {k.key_id: k for k in listed}
        check(by_id[created.key_id].plaintext == created.key, "listKeys decrypt")
        check(by_id[plain.key_id].plaintext is None, "plain keys have no plaintext")
        check(unkey.keys.verify_key(key=created.key).data.valid, "a recoverable key verifies")
        rolled = unkey.keys.reroll_key(key_id=created.key_id, expiration=0).data
        check(unkey.keys.get_key(key_id=rolled.key_id, decrypt=True).data.plaintext == rolled.key, "reroll stays recoverable")
        unkey.keys.delete_key(key_id=rolled.key_id)
        expect_error(errors.NotFoundErrorResponse, 404, lambda: unkey.keys.get_key(key_id=rolled.key_id, decrypt=True), "deleted")
        limited = raw("rootKeys.createKey", {"permissions": [f"api.{API_ID}.create_key", f"api.{API_ID}.read_key"]})["data"]["key"]
        with Unkey(root_key=limited, server_url=URL) as weak:
            expect_error(errors.ForbiddenErrorResponse, 403, lambda: weak.keys.create_key(api_id=API_ID, recoverable=True), "encrypt_key needed")
            expect_error(errors.ForbiddenErrorResponse, 403, lambda: weak.keys.get_key(key_id=plain.key_id, decrypt=True), "decrypt_key needed")
        # Leave one recoverable key for the 'down' phases.
        keep = unkey.keys.create_key(api_id=API_ID, recoverable=True).data
        print(f"KEEP={keep.key_id} {keep.key}")
    else:
        code = os.environ["STRONGBOX_EXPECT_CODE"]
        keep_id, keep_key = os.environ["STRONGBOX_KEEP_ID"], os.environ["STRONGBOX_KEEP_KEY"]
        started = time.monotonic()
        # createKey does not declare 503 in the SDK: its base error carries the body.
        body = expect_error(errors.UnkeyError, 503, lambda: unkey.keys.create_key(api_id=API_ID, recoverable=True), "recoverable createKey")
        check(body["error"]["code"] == code, f"code {body['error']['code']} != {code}")
        body = expect_error(errors.UnkeyError, 503, lambda: unkey.keys.get_key(key_id=keep_id, decrypt=True), "getKey decrypt")
        check(body["error"]["code"] == code, f"code {body['error']['code']} != {code}")
        check(time.monotonic() - started < 2.0, f"fast: {time.monotonic() - started:.2f}s")
        check(unkey.keys.verify_key(key=keep_key).data.valid, "verifyKey keeps working")
        check(unkey.keys.create_key(api_id=API_ID).data.key, "plain createKey keeps working")

print(f"sdk-compat: ok {checks} checks")
