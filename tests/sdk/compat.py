"""Drives a Strongbox api through the official Unkey Python SDK (unkey-py 3.2.2), unmodified.

Reads STRONGBOX_API_URL and STRONGBOX_ROOT_KEY. Exits non-zero at the first failed check; on
success prints "sdk-compat: ok <n> checks".
"""

import os
import sys
import time

from unkey.py import Unkey, errors, models

URL = os.environ["STRONGBOX_API_URL"]
ROOT = os.environ["STRONGBOX_ROOT_KEY"]
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"sdk-compat: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def expect_error(cls, status, fn, what):
    try:
        fn()
    except cls as e:
        check(e.status_code == status, f"{what}: status {e.status_code} != {status}")
        return e
    except errors.UnkeyError as e:
        check(False, f"{what}: got {type(e).__name__} {e.status_code}: {e.body}")
    check(False, f"{what}: no error raised")


with Unkey(root_key=ROOT, server_url=URL) as unkey:
    api_id = unkey.apis.create_api(name="sdk-python").data.api_id
    check(api_id.startswith("api_"), "createApi returns an id")
    # A key that expires while the rest of the flow runs; checked at the end.
    expires_at_ms = int(time.time() * 1000) + 1500
    expiring = unkey.keys.create_key(api_id=api_id, expires=expires_at_ms).data.key
    check(unkey.apis.get_api(api_id=api_id).data.name == "sdk-python", "getApi")

    created = unkey.keys.create_key(
        api_id=api_id,
        prefix="py",
        name="checkout",
        external_id="user_42",
        meta={"plan": "pro"},
        permissions=["documents.*"],
        credits={"remaining": 3, "refill": {"interval": "daily", "amount": 10}},
        ratelimits=[{"name": "requests", "limit": 100, "duration": 60000, "auto_apply": True}],
    ).data
    key, key_id = created.key, created.key_id
    check(key.startswith("py_") and key_id.startswith("key_"), "createKey returns the key once")

    got = unkey.keys.get_key(key_id=key_id).data
    check(got.key_id == key_id and got.name == "checkout", "getKey")
    check(got.start == key[: len("py_") + 4], "start is the prefix and 4 characters")
    check(got.meta == {"plan": "pro"}, "meta round-trips")
    check(got.credits.remaining == 3 and got.credits.refill.interval == "daily", "credits")
    check(got.identity.external_id == "user_42", "identity")
    check(got.plaintext is None, "no plaintext without decrypt")

    for _ in range(2):
        unkey.keys.create_key(api_id=api_id, external_id="user_7")
    page = unkey.apis.list_keys(api_id=api_id, limit=2)
    check(len(page.result.data) == 2 and page.result.pagination.has_more, "first page")
    second = unkey.apis.list_keys(api_id=api_id, limit=2, cursor=page.result.pagination.cursor)
    check(len(second.result.data) == 2 and not second.result.pagination.has_more, "second page")
    seen = {k.key_id for k in page.result.data} | {k.key_id for k in second.result.data}
    check(len(seen) == 4 and key_id in seen, "pages cover every key once")
    by_owner = unkey.apis.list_keys(api_id=api_id, external_id="user_7")
    check(len(by_owner.result.data) == 2, "listKeys filters by externalId")

    v = unkey.keys.verify_key(key=key).data
    check(v.valid and v.code == "VALID" and v.key_id == key_id, "verify VALID")
    check(v.credits == 2, "a verification spends a credit")
    check(v.identity.external_id == "user_42" and v.meta == {"plan": "pro"}, "verify data")
    check(unkey.keys.verify_key(key="py_doesnotexist").data.code == "NOT_FOUND", "verify NOT_FOUND")
    check(unkey.keys.verify_key(key=key, permissions="documents.read").data.valid, "documents.* covers documents.read")
    check(unkey.keys.verify_key(key=key, permissions="documents.read AND billing.read").data.code == "INSUFFICIENT_PERMISSIONS", "verify INSUFFICIENT_PERMISSIONS")
    check(unkey.keys.verify_key(key=key, credits={"cost": 5}).data.code == "USAGE_EXCEEDED", "verify USAGE_EXCEEDED")

    limited = unkey.keys.create_key(api_id=api_id, ratelimits=[{"name": "burst", "limit": 1, "duration": 60000, "auto_apply": True}]).data.key
    check(unkey.keys.verify_key(key=limited).data.valid, "first call within the limit")
    rl = unkey.keys.verify_key(key=limited).data
    check(rl.code == "RATE_LIMITED" and rl.ratelimits[0].exceeded, "verify RATE_LIMITED")

    unkey.keys.update_key(key_id=key_id, enabled=False, name="renamed")
    check(unkey.keys.verify_key(key=key).data.code == "DISABLED", "verify DISABLED after updateKey")
    unkey.keys.update_key(key_id=key_id, enabled=True)
    credits = unkey.keys.update_credits(key_id=key_id, operation="set", value=50).data
    check(credits.remaining == 50, "updateCredits set")
    credits = unkey.keys.update_credits(key_id=key_id, operation="increment", value=5).data
    check(credits.remaining == 55, "updateCredits increment")
    credits = unkey.keys.update_credits(key_id=key_id, operation="decrement", value=10).data
    check(credits.remaining == 45, "updateCredits decrement")

    who = unkey.keys.whoami(key=key).data
    check(who.key_id == key_id and who.name == "renamed", "whoami")

    rerolled = unkey.keys.reroll_key(key_id=key_id, expiration=0).data
    check(rerolled.key.startswith("py_") and rerolled.key != key, "rerollKey")
    check(unkey.keys.verify_key(key=key).data.code == "NOT_FOUND", "the old key stops at once")
    check(unkey.keys.verify_key(key=rerolled.key).data.valid, "the new key verifies")

    unkey.keys.delete_key(key_id=rerolled.key_id)
    check(unkey.keys.verify_key(key=rerolled.key).data.code == "NOT_FOUND", "deleteKey")

    rk = unkey.root_keys.create_key(name="reader", permissions=[f"api.{api_id}.read_key", f"api.{api_id}.verify_key"]).data
    check(rk.key.startswith("sb_"), "rootKeys.createKey")
    listed = unkey.root_keys.list_keys()
    check(any(k.key_id == rk.key_id for k in listed.result.data), "rootKeys.listKeys")

    with Unkey(root_key=rk.key, server_url=URL) as reader:
        check(len(reader.apis.list_keys(api_id=api_id).result.data) == 4, "a reader can list keys")
        expect_error(errors.ForbiddenErrorResponse, 403, lambda: reader.keys.create_key(api_id=api_id), "a reader cannot create keys")
        expect_error(errors.ForbiddenErrorResponse, 403, lambda: reader.root_keys.create_key(permissions=["**"]), "a reader cannot mint root keys")

    expect_error(errors.NotFoundErrorResponse, 404, lambda: unkey.keys.get_key(key_id="key_missing"), "unknown keyId")
    expect_error(errors.NotFoundErrorResponse, 404, lambda: unkey.keys.create_key(api_id="api_missing"), "unknown apiId")
    expect_error(errors.BadRequestErrorResponse, 400, lambda: unkey.keys.create_key(api_id=api_id, prefix="bad-prefix"), "invalid prefix")
    expect_error(errors.BadRequestErrorResponse, 400, lambda: unkey.keys.create_key(api_id=api_id, byte_length=8), "byteLength out of range")
    bad = expect_error(errors.BadRequestErrorResponse, 400, lambda: unkey.keys.verify_key(key=key, permissions="a AND ("), "bad permission query")
    check(bad.data.error.status == 400 and bad.data.error.detail, "errors parse into the SDK's model")

    with Unkey(root_key="sb_" + "0" * 64, server_url=URL) as stranger:
        expect_error(errors.UnauthorizedErrorResponse, 401, lambda: stranger.apis.create_api(name="x"), "an unknown root key")

    # Standalone rate limits: a namespace made on first use, overrides, several at once.
    def hit(identifier, limit=2):
        return unkey.ratelimit.limit(namespace="sdk-py", identifier=identifier, limit=limit, duration=60000).data

    first = hit("user_1")
    check(first.success and first.remaining == 1 and first.limit == 2, "ratelimit.limit")
    hit("user_1")
    check(not hit("user_1").success, "ratelimit.limit refuses past the limit")
    ov = unkey.ratelimit.set_override(namespace="sdk-py", identifier="vip_*", limit=50, duration=60000).data
    check(ov.override_id.startswith("rlor_"), "setOverride")
    vip = hit("vip_1")
    check(vip.limit == 50 and vip.override_id == ov.override_id, "a wildcard override applies")
    got_ov = unkey.ratelimit.get_override(namespace="sdk-py", identifier="vip_*").data
    check(got_ov.limit == 50 and got_ov.identifier == "vip_*", "getOverride")
    check(len(unkey.ratelimit.list_overrides(namespace="sdk-py").result.data) == 1, "listOverrides")
    two = [{"namespace": "sdk-py", "identifier": i, "limit": 2, "duration": 60000} for i in ("user_1", "user_9")]
    multi = unkey.ratelimit.multi_limit(request=two).data
    check(not multi.passed and [c.passed for c in multi.limits] == [False, True], "multiLimit")
    unkey.ratelimit.delete_override(namespace="sdk-py", identifier="vip_*")
    expect_error(errors.NotFoundErrorResponse, 404, lambda: unkey.ratelimit.get_override(namespace="sdk-py", identifier="vip_*"), "deleteOverride")

    # Identities: a limit shared by every key of one user.
    shared = [{"name": "shared", "limit": 2, "duration": 60000, "auto_apply": True}]
    ident = unkey.identities.create_identity(external_id="sdk-user", meta={"plan": "team"}, ratelimits=shared).data
    check(ident.identity_id.startswith("id_"), "createIdentity")
    expect_error(errors.ConflictErrorResponse, 409, lambda: unkey.identities.create_identity(external_id="sdk-user"), "a taken externalId")
    got_id = unkey.identities.get_identity(identity="sdk-user").data
    check(got_id.id == ident.identity_id and got_id.meta == {"plan": "team"} and got_id.ratelimits[0].name == "shared", "getIdentity")
    check(any(i.external_id == "sdk-user" for i in unkey.identities.list_identities(limit=10).result.data), "listIdentities")
    team_api = unkey.apis.create_api(name="sdk-python-team").data.api_id
    k1 = unkey.keys.create_key(api_id=team_api, external_id="sdk-user").data.key
    k2 = unkey.keys.create_key(api_id=team_api, external_id="sdk-user").data.key
    codes = [unkey.keys.verify_key(key=k).data.code for k in (k1, k2, k1)]
    check(codes == ["VALID", "VALID", "RATE_LIMITED"], f"an identity's limit is shared by its keys: {codes}")
    raised = [{"name": "shared", "limit": 100, "duration": 60000, "auto_apply": True}]
    up = unkey.identities.update_identity(identity="sdk-user", ratelimits=raised).data
    check(up.ratelimits[0].limit == 100, "updateIdentity")
    check(unkey.keys.verify_key(key=k1).data.code == "VALID", "the raised limit applies at once")
    unkey.identities.delete_identity(identity="sdk-user")
    expect_error(errors.NotFoundErrorResponse, 404, lambda: unkey.identities.get_identity(identity="sdk-user"), "deleteIdentity")
    unkey.apis.delete_api(api_id=team_api)

    # Waiting for a deadline to pass is the event itself here.
    time.sleep(max(0.0, expires_at_ms / 1000 - time.time() + 0.05))
    check(unkey.keys.verify_key(key=expiring).data.code == "EXPIRED", "verify EXPIRED")

    unkey.root_keys.delete_key(key_id=rk.key_id)
    unkey.apis.delete_api(api_id=api_id)
    expect_error(errors.NotFoundErrorResponse, 404, lambda: unkey.apis.get_api(api_id=api_id), "deleteApi")

print(f"sdk-compat: ok {checks} checks")
