// Recoverable keys through the official TypeScript SDK (@unkey/api 2.5.1), unmodified.
// Usage and environment as tests/sdk/recovery.py.
import { Unkey } from "@unkey/api";
import * as errors from "@unkey/api/models/errors";

const serverURL = process.env.STRONGBOX_API_URL;
const root = process.env.STRONGBOX_ROOT_KEY;
const apiId = process.env.STRONGBOX_API_ID;
// The SDK retries 5xx with backoff by default; with the vault down the server answers at once,
// and retries would only hide that.
const unkey = new Unkey({ rootKey: root, serverURL, retryConfig: { strategy: "none" } });
let checks = 0;

function check(condition, what) {
  if (!condition) {
    console.error(`sdk-recovery: FAILED: ${what}`);
    process.exit(1);
  }
  checks += 1;
}

async function expectError(cls, status, fn, what) {
  try {
    await fn();
  } catch (e) {
    check(e instanceof cls, `${what}: got ${e.constructor.name} ${e.statusCode ?? ""} ${e.body ?? e.message}`);
    check(e.statusCode === status, `${what}: status ${e.statusCode}`);
    return JSON.parse(e.body);
  }
  check(false, `${what}: no error raised`);
}

async function raw(call, body, key = root) {
  const response = await fetch(`${serverURL}/v2/${call}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  check(response.status === 200, `${call}: ${response.status}`);
  return response.json();
}

if (process.argv[2] === "full") {
  // The SDK does not declare 412 for createKey; it throws its base error with the body.
  const refused = await expectError(errors.UnkeyError, 412, () => unkey.keys.createKey({ apiId, recoverable: true }), "no opt-in yet");
  check(refused.error.code === "PRECONDITION_FAILED", "412 PRECONDITION_FAILED");
  await raw("apis.updateApi", { apiId, storeEncryptedKeys: true });
  const created = (await unkey.keys.createKey({ apiId, prefix: "rec", recoverable: true })).data;
  const plain = (await unkey.keys.createKey({ apiId })).data;
  check((await unkey.keys.getKey({ keyId: created.keyId, decrypt: true })).data.plaintext === created.key, "getKey decrypt");
  const listed = (await unkey.apis.listKeys({ apiId, decrypt: true })).result.data;
  check(listed.find((k) => k.keyId === created.keyId).plaintext === created.key, "listKeys decrypt");
  check(listed.find((k) => k.keyId === plain.keyId).plaintext === undefined, "plain keys have no plaintext");
  check((await unkey.keys.verifyKey({ key: created.key })).data.valid, "a recoverable key verifies");
  const rolled = (await unkey.keys.rerollKey({ keyId: created.keyId, expiration: 0 })).data;
  check((await unkey.keys.getKey({ keyId: rolled.keyId, decrypt: true })).data.plaintext === rolled.key, "reroll stays recoverable");
  await unkey.keys.deleteKey({ keyId: rolled.keyId });
  await expectError(errors.NotFoundErrorResponse, 404, () => unkey.keys.getKey({ keyId: rolled.keyId, decrypt: true }), "deleted");
  const limited = (await raw("rootKeys.createKey", { permissions: [`api.${apiId}.create_key`, `api.${apiId}.read_key`] })).data.key;
  const weak = new Unkey({ rootKey: limited, serverURL });
  await expectError(errors.ForbiddenErrorResponse, 403, () => weak.keys.createKey({ apiId, recoverable: true }), "encrypt_key needed");
  await expectError(errors.ForbiddenErrorResponse, 403, () => weak.keys.getKey({ keyId: plain.keyId, decrypt: true }), "decrypt_key needed");
  const keep = (await unkey.keys.createKey({ apiId, recoverable: true })).data;
  console.log(`KEEP=${keep.keyId} ${keep.key}`);
} else {
  const code = process.env.STRONGBOX_EXPECT_CODE;
  const started = Date.now();
  // createKey does not declare 503 in the SDK: its base error carries the body.
  let body = await expectError(errors.UnkeyError, 503, () => unkey.keys.createKey({ apiId, recoverable: true }), "recoverable createKey");
  check(body.error.code === code, `code ${body.error.code} != ${code}`);
  body = await expectError(errors.UnkeyError, 503, () => unkey.keys.getKey({ keyId: process.env.STRONGBOX_KEEP_ID, decrypt: true }), "getKey decrypt");
  check(body.error.code === code, `code ${body.error.code} != ${code}`);
  check(Date.now() - started < 2000, `fast: ${Date.now() - started} ms`);
  check((await unkey.keys.verifyKey({ key: process.env.STRONGBOX_KEEP_KEY })).data.valid, "verifyKey keeps working");
  check((await unkey.keys.createKey({ apiId })).data.key.length > 0, "plain createKey keeps working");
}
console.log(`sdk-compat: ok ${checks} checks`);
