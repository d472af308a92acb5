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

// Waiting for a deadline to pass is the event itself here.
await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now() + 50)));
check((await unkey.keys.verifyKey({ key: expiring })).data.code === "EXPIRED", "verify EXPIRED");

await unkey.apis.deleteApi({ apiId });
await expectError(errors.NotFoundErrorResponse, 404, () => unkey.apis.getApi({ apiId }), "deleteApi");
console.log(`sdk-compat: ok ${checks} checks`);
