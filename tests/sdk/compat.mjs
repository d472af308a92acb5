// Drives a Strongbox api through the official Unkey TypeScript SDK (@unkey/api 2.5.1), unmodified.
// Reads STRONGBOX_API_URL and STRONGBOX_ROOT_KEY. Exits non-zero at the first failed check; on
// success prints "sdk-compat: ok <n> checks".
import { Unkey } from "@unkey/api";
import * as errors from "@unkey/api/models/errors";

const serverURL = process.env.STRONGBOX_API_URL;
const unkey = new Unkey({ rootKey: process.env.STRONGBOX_ROOT_KEY, serverURL });
let checks = 0;

function check(condition, what) {
  if (!condition) {
    console.error(`sdk-compat: FAILED: ${what}`);
    process.exit(1);
  }
  checks += 1;
}

// @unkey/api 2.5.1 has no rootKeys methods, so root keys are managed over plain HTTP in the
// same wire format; the SDK then runs with the limited root key.
async function rootKeys(action, body) {
  const response = await fetch(`${serverURL}/v2/rootKeys.${action}`, {
    method: "POST",
    headers: { authorization: `Bearer ${process.env.STRONGBOX_ROOT_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  check(response.status === 200, `rootKeys.${action}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

async function expectError(cls, status, fn, what) {
  try {
    await fn();
  } catch (e) {
    check(e instanceof cls, `${what}: got ${e.constructor.name} ${e.statusCode ?? ""} ${e.body ?? e.message}`);
    check(e.statusCode === status, `${what}: status ${e.statusCode} != ${status}`);
    return e;
  }
  check(false, `${what}: no error raised`);
}

const apiId = (await unkey.apis.createApi({ name: "sdk-js" })).data.apiId;
check(apiId.startsWith("api_"), "createApi");
// A key that expires while the rest of the flow runs; checked at the end.
const expiresAt = Date.now() + 1500;
const expiring = (await unkey.keys.createKey({ apiId, expires: expiresAt })).data.key;
check((await unkey.apis.getApi({ apiId })).data.name === "sdk-js", "getApi");

const created = (
  await unkey.keys.createKey({
    apiId,
    prefix: "js",
    name: "checkout",
    externalId: "user_42",
    meta: { plan: "pro" },
    permissions: ["documents.*"],
    credits: { remaining: 3, refill: { interval: "daily", amount: 10 } },
    ratelimits: [{ name: "requests", limit: 100, duration: 60000, autoApply: true }],
  })
).data;
const { key, keyId } = created;
check(key.startsWith("js_") && keyId.startsWith("key_"), "createKey");

const got = (await unkey.keys.getKey({ keyId })).data;
check(got.keyId === keyId && got.name === "checkout" && got.meta.plan === "pro", "getKey");
check(got.start === key.slice(0, 3 + 4), "start");
check(got.credits.remaining === 3 && got.credits.refill.interval === "daily", "credits");
check(got.identity.externalId === "user_42", "identity");

for (let i = 0; i < 2; i++) await unkey.keys.createKey({ apiId, externalId: "user_7" });
const first = await unkey.apis.listKeys({ apiId, limit: 2 });
check(first.result.data.length === 2 && first.result.pagination.hasMore, "first page");
const second = await unkey.apis.listKeys({ apiId, limit: 2, cursor: first.result.pagination.cursor });
check(second.result.data.length === 2 && !second.result.pagination.hasMore, "last page");
const owned = await unkey.apis.listKeys({ apiId, externalId: "user_7" });
check(owned.result.data.length === 2, "listKeys by externalId");

let v = (await unkey.keys.verifyKey({ key })).data;
check(v.valid && v.code === "VALID" && v.keyId === keyId && v.credits === 2, "verify VALID");
check((await unkey.keys.verifyKey({ key: "js_nope" })).data.code === "NOT_FOUND", "verify NOT_FOUND");
check((await unkey.keys.verifyKey({ key, permissions: "documents.read" })).data.valid, "documents.* covers documents.read");
check((await unkey.keys.verifyKey({ key, permissions: "documents.read AND billing.read" })).data.code === "INSUFFICIENT_PERMISSIONS", "verify INSUFFICIENT_PERMISSIONS");
check((await unkey.keys.verifyKey({ key, credits: { cost: 5 } })).data.code === "USAGE_EXCEEDED", "verify USAGE_EXCEEDED");

const limited = (await unkey.keys.createKey({ apiId, ratelimits: [{ name: "burst", limit: 1, duration: 60000, autoApply: true }] })).data.key;
check((await unkey.keys.verifyKey({ key: limited })).data.valid, "within the limit");
const rl = (await unkey.keys.verifyKey({ key: limited })).data;
check(rl.code === "RATE_LIMITED" && rl.ratelimits[0].exceeded, "verify RATE_LIMITED");

await unkey.keys.updateKey({ keyId, enabled: false, name: "renamed" });
check((await unkey.keys.verifyKey({ key })).data.code === "DISABLED", "verify DISABLED");
await unkey.keys.updateKey({ keyId, enabled: true });
check((await unkey.keys.updateCredits({ keyId, operation: "set", value: 50 })).data.remaining === 50, "updateCredits set");
check((await unkey.keys.updateCredits({ keyId, operation: "increment", value: 5 })).data.remaining === 55, "updateCredits increment");
check((await unkey.keys.updateCredits({ keyId, operation: "decrement", value: 10 })).data.remaining === 45, "updateCredits decrement");
check((await unkey.keys.whoami({ key })).data.name === "renamed", "whoami");

const rolled = (await unkey.keys.rerollKey({ keyId, expiration: 0 })).data;
check(rolled.key.startsWith("js_") && rolled.key !== key, "rerollKey");
check((await unkey.keys.verifyKey({ key })).data.code === "NOT_FOUND", "old key stops at once");
check((await unkey.keys.verifyKey({ key: rolled.key })).data.valid, "new key verifies");
await unkey.keys.deleteKey({ keyId: rolled.keyId });
check((await unkey.keys.verifyKey({ key: rolled.key })).data.code === "NOT_FOUND", "deleteKey");

const rk = (await rootKeys("createKey", { name: "reader", permissions: [`api.${apiId}.read_key`] })).data;
check(rk.key.startsWith("sb_"), "rootKeys.createKey");
const listed = await rootKeys("listKeys", {});
check(listed.data.some((k) => k.keyId === rk.keyId), "rootKeys.listKeys");
const reader = new Unkey({ rootKey: rk.key, serverURL });
check((await reader.apis.listKeys({ apiId })).result.data.length === 4, "a reader can list keys");
await expectError(errors.ForbiddenErrorResponse, 403, () => reader.keys.createKey({ apiId }), "a reader cannot create keys");
await rootKeys("updateKey", { keyId: rk.keyId, permissions: [`api.${apiId}.read_key`, `api.${apiId}.create_key`] });
check((await reader.keys.createKey({ apiId })).data.key.length > 0, "rootKeys.updateKey applies at once");
const rerolledRoot = (await rootKeys("rerollKey", { keyId: rk.keyId, expiration: 0 })).data;
await expectError(errors.UnauthorizedErrorResponse, 401, () => reader.apis.getApi({ apiId }), "the rerolled root key is gone");
await rootKeys("deleteKey", { keyId: rerolledRoot.keyId });

await expectError(errors.NotFoundErrorResponse, 404, () => unkey.keys.getKey({ keyId: "key_missing" }), "unknown keyId");
await expectError(errors.NotFoundErrorResponse, 404, () => unkey.keys.createKey({ apiId: "api_missing" }), "unknown apiId");
await expectError(errors.BadRequestErrorResponse, 400, () => unkey.keys.createKey({ apiId, prefix: "bad-prefix" }), "invalid prefix");
const bad = await expectError(errors.BadRequestErrorResponse, 400, () => unkey.keys.verifyKey({ key, permissions: "a AND (" }), "bad query");
check(bad.data$.error.status === 400 && bad.data$.error.detail.length > 0, "errors parse into the SDK's model");

// Standalone rate limits: a namespace made on first use, overrides, several at once.
const hit = async (identifier) =>
  (await unkey.ratelimit.limit({ namespace: "sdk-js", identifier, limit: 2, duration: 60000 })).data;
const firstHit = await hit("user_1");
check(firstHit.success && firstHit.remaining === 1 && firstHit.limit === 2, "ratelimit.limit");
await hit("user_1");
check(!(await hit("user_1")).success, "ratelimit.limit refuses past the limit");
const ov = (await unkey.ratelimit.setOverride({ namespace: "sdk-js", identifier: "vip_*", limit: 50, duration: 60000 })).data;
check(ov.overrideId.startsWith("rlor_"), "setOverride");
const vip = await hit("vip_1");
check(vip.limit === 50 && vip.overrideId === ov.overrideId, "a wildcard override applies");
const gotOv = (await unkey.ratelimit.getOverride({ namespace: "sdk-js", identifier: "vip_*" })).data;
check(gotOv.limit === 50 && gotOv.identifier === "vip_*", "getOverride");
check((await unkey.ratelimit.listOverrides({ namespace: "sdk-js" })).result.data.length === 1, "listOverrides");
const two = ["user_1", "user_9"].map((identifier) => ({ namespace: "sdk-js", identifier, limit: 2, duration: 60000 }));
const multi = (await unkey.ratelimit.multiLimit(two)).data;
check(!multi.passed && multi.limits.map((c) => c.passed).join() === "false,true", "multiLimit");
await unkey.ratelimit.deleteOverride({ namespace: "sdk-js", identifier: "vip_*" });
await expectError(errors.NotFoundErrorResponse, 404, () => unkey.ratelimit.getOverride({ namespace: "sdk-js", identifier: "vip_*" }), "deleteOverride");

// Identities: a limit shared by every key of one user.
const shared = [{ name: "shared", limit: 2, duration: 60000, autoApply: true }];
const ident = (await unkey.identities.createIdentity({ externalId: "sdk-user", meta: { plan: "team" }, ratelimits: shared })).data;
check(ident.identityId.startsWith("id_"), "createIdentity");
await expectError(errors.ConflictErrorResponse, 409, () => unkey.identities.createIdentity({ externalId: "sdk-user" }), "a taken externalId");
const gotId = (await unkey.identities.getIdentity({ identity: "sdk-user" })).data;
check(gotId.id === ident.identityId && gotId.meta.plan === "team" && gotId.ratelimits[0].name === "shared", "getIdentity");
check((await unkey.identities.listIdentities({ limit: 10 })).result.data.some((i) => i.externalId === "sdk-user"), "listIdentities");
const teamApi = (await unkey.apis.createApi({ name: "sdk-js-team" })).data.apiId;
const k1 = (await unkey.keys.createKey({ apiId: teamApi, externalId: "sdk-user" })).data.key;
const k2 = (await unkey.keys.createKey({ apiId: teamApi, externalId: "sdk-user" })).data.key;
const codes = [];
for (const k of [k1, k2, k1]) codes.push((await unkey.keys.verifyKey({ key: k })).data.code);
check(codes.join() === "VALID,VALID,RATE_LIMITED", `an identity's limit is shared by its keys: ${codes}`);
const raised = [{ name: "shared", limit: 100, duration: 60000, autoApply: true }];
const up = (await unkey.identities.updateIdentity({ identity: "sdk-user", ratelimits: raised })).data;
check(up.ratelimits[0].limit === 100, "updateIdentity");
check((await unkey.keys.verifyKey({ key: k1 })).data.code === "VALID", "the raised limit applies at once");
await unkey.identities.deleteIdentity({ identity: "sdk-user" });
await expectError(errors.NotFoundErrorResponse, 404, () => unkey.identities.getIdentity({ identity: "sdk-user" }), "deleteIdentity");
await unkey.apis.deleteApi({ apiId: teamApi });

// Waiting for a deadline to pass is the event itself here.
await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now() + 50)));
check((await unkey.keys.verifyKey({ key: expiring })).data.code === "EXPIRED", "verify EXPIRED");

await unkey.apis.deleteApi({ apiId });
await expectError(errors.NotFoundErrorResponse, 404, () => unkey.apis.getApi({ apiId }), "deleteApi");
console.log(`sdk-compat: ok ${checks} checks`);
