// List a convlog thread's messages by asking the query service (`convlog serve`) over NATS.
//
//   npx tsx list-messages.ts THREAD_ID [NATS_URL]
//
// THREAD_ID and NATS_URL may also come from the environment (NATS_URL defaults to
// nats://127.0.0.1:4222); CONVLOG_STREAM names the stream (default CONVLOG). Exits 0 after
// printing the messages, 1 on an error (an error reply: its code and description), 2 on usage.
import { connect, RequestError, type NatsConnection } from "@nats-io/transport-node";

// The seed's JSON of a thread and of a message: only the fields printed here.
interface Thread {
  id: string;
  tenant_id: string;
  title: string | null;
}
interface Message {
  role: string;
  content: string;
}

// What a convlog error reply carries: micro's code and description, and the error's name.
class ServiceError extends Error {
  constructor(
    readonly code: string,
    readonly description: string,
    readonly kind: string,
  ) {
    super(`${code} ${kind}: ${description}`);
  }
}

// A thread id goes into the subject as one token: as it is when it is a safe token, else "_"
// + lowercase unpadded base32 of its UTF-8, exactly as eventlog.subjects.encode_token does.
function encodeToken(id: string): string {
  if (/^[A-Za-z0-9-][A-Za-z0-9_-]*$/.test(id)) return id;
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let token = "_";
  let buffer = 0;
  let bits = 0;
  for (const byte of new TextEncoder().encode(id)) {
    buffer = ((buffer << 8) | byte) & 0xfff; // never more than 12 bits pending
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      token += alphabet[(buffer >> bits) & 31];
    }
  }
  if (bits > 0) token += alphabet[(buffer << (5 - bits)) & 31];
  return token;
}

// One request to an endpoint about a thread. The server's `mappings` block routes
// convlog-q.<stream>.thread.<endpoint>.<thread token> to the thread's partition, where the
// replicas that fold it share the request: the client does no hashing.
async function ask<T>(nc: NatsConnection, stream: string, endpoint: string, threadId: string,
  request: object): Promise<T> {
  const subject = `convlog-q.${stream}.thread.${endpoint}.${encodeToken(threadId)}`;
  const reply = await nc.request(subject, JSON.stringify(request), { timeout: 5000 });
  const code = reply.headers?.get("Nats-Service-Error-Code");
  if (code) {
    const headers = reply.headers!;
    throw new ServiceError(code, headers.get("Nats-Service-Error"), headers.get("Convlog-Error"));
  }
  return reply.json<T>();
}

async function main(): Promise<number> {
  const threadId = process.argv[2] ?? process.env.THREAD_ID;
  const natsUrl = process.argv[3] ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const stream = process.env.CONVLOG_STREAM ?? "CONVLOG";
  if (!threadId) {
    console.error("usage: list-messages.ts THREAD_ID [NATS_URL]");
    return 2;
  }
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: natsUrl });
    // list_messages of an unknown thread is an empty list, so ask for the thread first:
    // an unknown id is then an error reply, 404.
    const thread = await ask<Thread>(nc, stream, "get_thread", threadId, { thread_id: threadId });
    console.log(`thread ${thread.id} (${thread.title ?? "untitled"}) of tenant ${thread.tenant_id}`);
    const messages = await ask<Message[]>(nc, stream, "list_messages", threadId, {
      thread_id: threadId,
    });
    for (const message of messages) console.log(`[${message.role}] ${message.content}`);
    return 0;
  } catch (err) {
    if (err instanceof ServiceError) {
      console.error(`error ${err.code} (${err.kind}): ${err.description}`);
    } else if (err instanceof RequestError && err.isNoResponders()) {
      console.error(`error: no convlog replica serves stream ${stream}: is convlog serve running?`);
    } else {
      console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    }
    return 1;
  } finally {
    await nc?.close();
  }
}

process.exitCode = await main();
