// Validate UIMessages with the AI SDK's own validator: `node validate.mjs < messages.json`.
//
// Reads a JSON array of UIMessages on stdin and checks it with `safeValidateUIMessages` from
// the `ai` package. Its zod schemas drop keys they do not know, so the messages must also come
// out of it unchanged: a misspelt field fails too. Exits 0 and prints "valid: N messages",
// else prints the reason on stderr and exits 1.
import { isDeepStrictEqual } from "node:util";
import { safeValidateUIMessages } from "ai";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const messages = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const checked = await safeValidateUIMessages({ messages });
if (!checked.success) {
  console.error(`invalid: ${checked.error.message.slice(0, 2000)}`);
  process.exit(1);
}
if (!isDeepStrictEqual(checked.data, messages)) {
  console.error(`invalid: the validator dropped or changed fields: ${JSON.stringify(checked.data)}`);
  process.exit(1);
}
console.log(`valid: ${messages.length} messages`);
