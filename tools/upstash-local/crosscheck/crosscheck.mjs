// Cross-check of upstash-local against the official @upstash/redis client.
//
// Every check is a function of a client. It runs twice per mode, on two instances of the SAME
// official client class that differ only in their transport:
//
//   endpoint: `new Redis({ url, token, ...options })`, the real HTTP client, talking to
//             upstash-local, which talks to redis-server database 0;
//   direct:   `new Redis(requester)` with a requester that sends the client's command arrays
//             straight to redis-server database 1 over plain RESP (the tiny RESP2 client below),
//             and hands back the raw replies in the shape the REST API promises: `{result}` with
//             strings (bytes decoded as UTF-8 with U+FFFD, like the client's own decoder),
//             integers, nulls and nested arrays, `{error}` with Redis's error text, one item per
//             command for pipelines and transactions.
//
// Both databases start empty and see the same commands in the same order, so every result must
// be identical. Because the same client code deserializes both sides (JSON parsing of values,
// HGETALL to objects, ...), nothing of the client's behaviour has to be re-implemented here, and
// a difference can only come from the endpoint: its JSON mapping, base64 rule, error routing,
// pipeline or transaction handling. The direct side deliberately uses no Redis client package:
// node-redis and ioredis reshape replies themselves (ioredis turns HGETALL into an object, for
// one), which would hide exactly what this script looks for.
//
// Modes: the client's defaults (auto-pipelining on, base64 responses, JSON deserialization), the
// plain mode `enableAutoPipelining: false, responseEncoding: false`, and, to see strings versus
// numbers undisguised by the client's JSON parsing, the plain mode with
// `automaticDeserialization: false` as well.
//
// Environment: UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN (the endpoint) and
// DIRECT_REDIS_URL (redis://host:port/db, the SAME redis-server, another database).
//
// Prints one line per check and mode, then `N passed, N failed`; exits 1 on any failure.

import net from "node:net";
import { Redis } from "@upstash/redis";

const url = process.env.UPSTASH_REDIS_REST_URL;
const token = process.env.UPSTASH_REDIS_REST_TOKEN;
const directUrl = process.env.DIRECT_REDIS_URL;
if (!url || !token || !directUrl) {
  console.error("set UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN and DIRECT_REDIS_URL");
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// A minimal RESP2 client: commands out as arrays of bulk strings, replies parsed as they are.

class RespError {
  constructor(message) {
    this.message = message;
  }
}

class RespConnection {
  static async connect(redisUrl) {
    const parsed = new URL(redisUrl);
    const socket = net.connect({ host: parsed.hostname, port: Number(parsed.port || 6379) });
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const connection = new RespConnection(socket);
    const db = parsed.pathname.replace(/^\//, "");
    if (db) {
      const [reply] = await connection.send([["SELECT", db]]);
      if (reply instanceof RespError) throw new Error(`SELECT ${db}: ${reply.message}`);
    }
    return connection;
  }

  constructor(socket) {
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    this.waiting = [];
    socket.on("data", (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.drain();
    });
    const fail = (err) => {
      for (const w of this.waiting.splice(0)) w.reject(err ?? new Error("connection closed"));
    };
    socket.on("error", fail);
    socket.on("close", () => fail());
  }

  // Sends commands in one write and resolves with their replies, in order.
  send(commands) {
    const parts = [];
    for (const command of commands) {
      parts.push(Buffer.from(`*${command.length}\r\n`));
      for (const arg of command) {
        const bytes = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg), "utf8");
        parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n"));
      }
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ count: commands.length, replies: [], resolve, reject });
      this.socket.write(Buffer.concat(parts));
    });
  }

  drain() {
    while (this.waiting.length > 0) {
      const parsed = parseReply(this.buffer, 0);
      if (!parsed) return;
      this.buffer = this.buffer.subarray(parsed.end);
      const waiter = this.waiting[0];
      waiter.replies.push(parsed.value);
      if (waiter.replies.length === waiter.count) {
        this.waiting.shift();
        waiter.resolve(waiter.replies);
      }
    }
  }

  close() {
    this.socket.end();
  }
}

// One reply from buf at start: { value, end } or null when incomplete. Bulk strings stay Buffers.
function parseReply(buf, start) {
  const lineEnd = buf.indexOf("\r\n", start);
  if (lineEnd < 0) return null;
  const type = String.fromCharCode(buf[start]);
  const line = buf.toString("utf8", start + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case "+":
      return { value: line, end: next };
    case "-":
      return { value: new RespError(line), end: next };
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return null;
      return { value: buf.subarray(next, next + len), end: next + len + 2 };
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, pos);
        if (!item) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

const utf8 = new TextDecoder(); // not fatal: invalid sequences become U+FFFD

// A RESP reply as the REST API writes a result.
function restValue(value) {
  if (Buffer.isBuffer(value)) return utf8.decode(value);
  if (Array.isArray(value)) return value.map(restValue);
  if (value instanceof RespError) return value.message;
  return value;
}

function restItem(value) {
  return value instanceof RespError ? { error: value.message } : { result: restValue(value) };
}

// The @upstash/redis Requester interface, answered by redis-server directly.
class DirectRequester {
  constructor(connection) {
    this.connection = connection;
    this.readYourWrites = false;
    this.upstashSyncToken = "";
  }

  async request({ path, body }) {
    const route = path?.[0];
    if (route === "pipeline") {
      const replies = await this.connection.send(body);
      return replies.map(restItem);
    }
    if (route === "multi-exec") {
      const replies = await this.connection.send([["MULTI"], ...body, ["EXEC"]]);
      const exec = replies[replies.length - 1];
      if (exec instanceof RespError) throw new Error(exec.message);
      return exec.map(restItem);
    }
    const [reply] = await this.connection.send([body]);
    return restItem(reply);
  }
}

// ---------------------------------------------------------------------------------------------
// The checks.

// Error text without what each transport wraps around it.
function errorText(err) {
  let message = String(err?.message ?? err);
  message = message.replace(/, command was: [\s\S]*$/, "");
  message = message.replace(/^Command failed: /, "");
  message = message.replace(/^Command \d+ \[ [^\]]* \] failed: /, "");
  // A discarded transaction: Redis says "EXECABORT Transaction discarded because of previous
  // errors.", upstash-local adds which error it was. Compare the error code only.
  if (message.startsWith("EXECABORT")) return "EXECABORT";
  return message;
}

function normalizeItems(items) {
  return items.map((item) => (item.error ? { error: errorText(item.error) } : item));
}

const sorted = (value) => (Array.isArray(value) ? [...value].sort() : value);

function checks() {
  const list = [];
  // name, function of a client, options: { compare: "sorted" | "ttl" | "pttl", expect }
  const check = (name, run, options = {}) => list.push({ name, run, ...options });

  const nonAscii = "héllo ✓ 日本語 🚀 ñandú";
  const binaryish = "\u0000\u0001\u0002\u007f tab\t nl\n cr\r quote\" back\\ \u00ff\u0100 \ufffd end";
  const script = "return {KEYS[1], ARGV[1], redis.call('INCRBY', KEYS[1], ARGV[1])}";

  check("ping", (r) => r.ping(), { expect: "PONG" });
  check("echo non-ASCII", (r) => r.echo(nonAscii));
  check("dbsize empty", (r) => r.dbsize(), { expect: 0 });

  // Strings.
  check("set ascii", (r) => r.set("s:ascii", "hello"), { expect: "OK" });
  check("get ascii", (r) => r.get("s:ascii"), { expect: "hello" });
  check("set non-ASCII", (r) => r.set("s:utf8", nonAscii));
  check("get non-ASCII", (r) => r.get("s:utf8"), { expect: nonAscii });
  check("set binary-ish text", (r) => r.set("s:bin", binaryish));
  check("get binary-ish text", (r) => r.get("s:bin"), { expect: binaryish });
  check("getrange cuts a UTF-8 sequence", (r) => r.getrange("s:utf8", 0, 1));
  check("strlen bytes", (r) => r.strlen("s:utf8"));
  check("set OK as a value", (r) => r.set("s:ok", "OK"));
  check("get OK as a value", (r) => r.get("s:ok"), { expect: "OK" });
  check("set JSON object", (r) => r.set("s:json", { a: 1, b: [true, null, "x"] }));
  check("get JSON object", (r) => r.get("s:json"));
  check("set numeric string", (r) => r.set("s:num", "007"));
  check("get numeric string", (r) => r.get("s:num"));
  check("set number", (r) => r.set("s:n", 42));
  check("get number", (r) => r.get("s:n"));
  check("set float", (r) => r.set("s:f", 0.1 + 0.2));
  check("get float", (r) => r.get("s:f"));
  check("set nx on existing", (r) => r.set("s:ascii", "x", { nx: true }), { expect: null });
  check("set get option", (r) => r.set("s:ascii", "world", { get: true }));
  check("get missing", (r) => r.get("s:missing"), { expect: null });
  check("append", (r) => r.append("s:ascii", "!"));
  check("mset", (r) => r.mset({ "m:1": "a", "m:2": 2, "m:3": nonAscii }));
  check("mget with missing", (r) => r.mget("m:1", "m:2", "m:missing", "m:3"));
  check("exists", (r) => r.exists("m:1", "m:2", "m:missing"), { expect: 2 });
  check("type", (r) => r.type("m:1"), { expect: "string" });
  check("keys", (r) => r.keys("m:*"), { compare: "sorted" });
  check("rename", (r) => r.rename("m:3", "m:renamed"));
  check("getdel", (r) => r.getdel("m:renamed"));
  check("del", (r) => r.del("m:1", "m:2", "m:missing"), { expect: 2 });
  check("raw exec command", (r) => r.exec(["STRLEN", "s:bin"]));

  // Numbers.
  check("incr", (r) => r.incr("n:c"), { expect: 1 });
  check("incrby", (r) => r.incrby("n:c", 41), { expect: 42 });
  check("decr", (r) => r.decr("n:c"));
  check("decrby", (r) => r.decrby("n:c", 10));
  check("incrbyfloat", (r) => r.incrbyfloat("n:f", 1.5));
  check("incrbyfloat negative", (r) => r.incrbyfloat("n:f", -0.25));
  check("incr on text is an error", (r) => r.incr("s:ascii"));
  check("wrong type is an error", (r) => r.lpush("s:ascii", "x"));

  // Expiry.
  check("set ex", (r) => r.set("e:k", "v", { ex: 100 }));
  check("ttl", (r) => r.ttl("e:k"), { compare: "ttl" });
  check("pttl", (r) => r.pttl("e:k"), { compare: "pttl" });
  check("persist", (r) => r.persist("e:k"), { expect: 1 });
  check("ttl after persist", (r) => r.ttl("e:k"), { expect: -1 });
  check("expire", (r) => r.expire("e:k", 50), { expect: 1 });
  check("ttl after expire", (r) => r.ttl("e:k"), { compare: "ttl" });
  check("ttl missing key", (r) => r.ttl("e:missing"), { expect: -2 });
  check("setex", (r) => r.setex("e:k2", 30, nonAscii));

  // Hashes.
  check("hset", (r) => r.hset("h", { f1: "v1", f2: 2, f3: nonAscii, f4: "{\"j\":1}" }), {
    expect: 4,
  });
  check("hget", (r) => r.hget("h", "f3"), { expect: nonAscii });
  check("hget number", (r) => r.hget("h", "f2"));
  check("hgetall", (r) => r.hgetall("h"));
  check("hgetall missing", (r) => r.hgetall("h:missing"));
  check("hmget", (r) => r.hmget("h", "f1", "nope", "f4"));
  check("hkeys", (r) => r.hkeys("h"), { compare: "sorted" });
  check("hvals", (r) => r.hvals("h"), { compare: "sorted" });
  check("hlen", (r) => r.hlen("h"), { expect: 4 });
  check("hexists", (r) => r.hexists("h", "f1"), { expect: 1 });
  check("hincrby", (r) => r.hincrby("h", "count", 5), { expect: 5 });
  check("hincrbyfloat", (r) => r.hincrbyfloat("h", "fl", 2.5));
  check("hsetnx", (r) => r.hsetnx("h", "f1", "other"), { expect: 0 });
  check("hdel", (r) => r.hdel("h", "f1", "nope"), { expect: 1 });
  check("hincrby on text is an error", (r) => r.hincrby("h", "f3", 1));

  // Lists.
  check("rpush", (r) => r.rpush("l", "a", "b", nonAscii, "4"), { expect: 4 });
  check("lpush", (r) => r.lpush("l", "z"), { expect: 5 });
  check("lrange", (r) => r.lrange("l", 0, -1));
  check("llen", (r) => r.llen("l"), { expect: 5 });
  check("lindex", (r) => r.lindex("l", 3));
  check("lpos", (r) => r.lpos("l", "b"), { expect: 2 });
  check("lset", (r) => r.lset("l", 0, "zz"));
  check("lpop", (r) => r.lpop("l"));
  check("rpop", (r) => r.rpop("l"));
  check("lpop count", (r) => r.lpop("l", 2));
  check("lrem", (r) => r.lrem("l", 0, nonAscii));
  check("lpop empty", (r) => r.lpop("l:missing"), { expect: null });
  check("lset out of range is an error", (r) => r.lset("l", 99, "x"));

  // Sets.
  check("sadd", (r) => r.sadd("st", "x", "y", nonAscii, "1"), { expect: 4 });
  check("sadd again", (r) => r.sadd("st", "x"), { expect: 0 });
  check("smembers", (r) => r.smembers("st"), { compare: "sorted" });
  check("sismember", (r) => r.sismember("st", nonAscii), { expect: 1 });
  check("smismember", (r) => r.smismember("st", ["x", "nope"]));
  check("scard", (r) => r.scard("st"), { expect: 4 });
  check("srem", (r) => r.srem("st", "y"), { expect: 1 });
  check("sadd other", (r) => r.sadd("st2", "x", "w"));
  check("sinter", (r) => r.sinter("st", "st2"), { compare: "sorted" });
  check("sunion", (r) => r.sunion("st", "st2"), { compare: "sorted" });

  // Sorted sets.
  check(
    "zadd",
    (r) => r.zadd("z", { score: 1, member: "a" }, { score: 2.5, member: "b" }, { score: -3, member: nonAscii }),
    { expect: 3 },
  );
  check("zscore", (r) => r.zscore("z", "b"));
  check("zscore missing", (r) => r.zscore("z", "nope"), { expect: null });
  check("zrange", (r) => r.zrange("z", 0, -1));
  check("zrange withScores", (r) => r.zrange("z", 0, -1, { withScores: true }));
  check("zrange rev", (r) => r.zrange("z", 0, 1, { rev: true, withScores: true }));
  check("zrange byScore", (r) => r.zrange("z", 0, 10, { byScore: true }));
  check("zincrby", (r) => r.zincrby("z", 0.25, "a"));
  check("zrank", (r) => r.zrank("z", "b"));
  check("zcard", (r) => r.zcard("z"), { expect: 3 });
  check("zcount", (r) => r.zcount("z", 0, 3), { expect: 2 });
  check("zmscore", (r) => r.zmscore("z", ["a", "nope", "b"]));
  check("zpopmin", (r) => r.zpopmin("z", 1));
  check("zrem", (r) => r.zrem("z", "b"), { expect: 1 });

  // Scripts.
  let sha = "";
  check("script load", async (r) => (sha = await r.scriptLoad(script)));
  check("evalsha", (r) => r.evalsha(sha, ["sc:k"], ["5"]));
  check("eval", (r) => r.eval(script, ["sc:k"], [3]));
  check("eval nested table with nil and status", (r) =>
    r.eval("return {1, {'x', false, redis.status_reply('OK')}, 'y', {}}", [], []),
  );
  check("eval invalid UTF-8", (r) => r.eval("return string.char(104, 255, 254, 105)", [], []));
  check("eval error", (r) => r.eval("return redis.call('INCR', KEYS[1])", ["s:ascii"], []));
  check("eval error_reply", (r) => r.eval("return redis.error_reply('MYERR custom')", [], []));
  check("evalsha NOSCRIPT", (r) => r.evalsha("ffffffffffffffffffffffffffffffffffffffff", [], []));
  check("createScript exec (EVALSHA, EVAL fallback)", (r) =>
    r.createScript("return ARGV[1] .. '!'").exec([], [nonAscii]),
  );

  // Pipelines.
  check("pipeline", (r) =>
    r.pipeline().set("p:a", "1").incr("p:a").get("p:a").hset("p:h", { f: "v" }).hgetall("p:h").exec(),
  );
  check("pipeline keepErrors", async (r) =>
    normalizeItems(
      await r.pipeline().set("p:s", "x").incr("p:s").get("p:s").lpush("p:s", "y").get("p:missing").exec({ keepErrors: true }),
    ),
  );
  check("pipeline error throws", (r) => r.pipeline().get("p:s").incr("p:s").exec());
  check("pipeline non-ASCII and binary-ish", (r) =>
    r.pipeline().set("p:u", nonAscii).get("p:u").set("p:b", binaryish).get("p:b").mget("p:u", "p:b", "p:none").exec(),
  );

  // Transactions.
  check("multi", (r) => r.multi().set("t:a", "1").incr("t:a").get("t:a").lrange("l", 0, -1).exec());
  check("multi runtime error keepErrors", async (r) =>
    normalizeItems(await r.multi().set("t:s", "x").incr("t:s").set("t:after", "ok").get("t:after").exec({ keepErrors: true })),
  );
  check("multi discarded (arity error while queueing)", (r) => r.multi().set("t:never", "1").sinter().exec());
  check("multi discarded ran nothing", (r) => r.exists("t:never"), { expect: 0 });

  check("dbsize at the end", (r) => r.dbsize());
  return list;
}

// ---------------------------------------------------------------------------------------------
// Running.

async function outcome(run, client) {
  try {
    return { ok: await run(client) };
  } catch (err) {
    return { error: errorText(err) };
  }
}

function same(endpoint, direct, compare) {
  if ("error" in endpoint || "error" in direct) {
    return JSON.stringify(endpoint) === JSON.stringify(direct);
  }
  // Remaining lifetimes tick while the two sides run: allow one second.
  if (compare === "ttl" || compare === "pttl") {
    const tolerance = compare === "ttl" ? 1 : 1000;
    return typeof endpoint.ok === "number" && Math.abs(endpoint.ok - direct.ok) <= tolerance;
  }
  const a = compare === "sorted" ? sorted(endpoint.ok) : endpoint.ok;
  const b = compare === "sorted" ? sorted(direct.ok) : direct.ok;
  return JSON.stringify(a) === JSON.stringify(b);
}

const show = (value) => {
  const text = JSON.stringify(value);
  return text.length > 160 ? `${text.slice(0, 160)}...` : text;
};

const modes = [
  { name: "default", options: {} },
  { name: "plain", options: { enableAutoPipelining: false, responseEncoding: false } },
  {
    name: "plain-raw",
    options: { enableAutoPipelining: false, responseEncoding: false, automaticDeserialization: false },
  },
];

let passed = 0;
let failed = 0;
const direct = await RespConnection.connect(directUrl);
try {
  for (const mode of modes) {
    const endpointClient = new Redis({
      url,
      token,
      enableTelemetry: false,
      retry: { retries: 0 },
      ...mode.options,
    });
    const directClient = new Redis(new DirectRequester(direct));
    // The requester path of the Redis constructor takes no options; set the one that matters.
    directClient.opts = { automaticDeserialization: mode.options.automaticDeserialization };

    // Start both databases empty.
    await endpointClient.flushdb();
    await direct.send([["FLUSHDB"]]);

    for (const { name, run, compare, expect } of checks()) {
      const endpoint = await outcome(run, endpointClient);
      const expected = await outcome(run, directClient);
      let problem = "";
      if (!same(endpoint, expected, compare)) {
        problem = `endpoint ${show(endpoint)} != direct ${show(expected)}`;
      } else if (expect !== undefined && JSON.stringify(endpoint.ok) !== JSON.stringify(expect)) {
        problem = `both ${show(endpoint)}, expected ${show(expect)}`;
      }
      if (problem) {
        failed += 1;
        console.log(`FAIL [${mode.name}] ${name}: ${problem}`);
      } else {
        passed += 1;
        console.log(`ok   [${mode.name}] ${name}: ${show(endpoint)}`);
      }
    }

    // The endpoint hands out a sync token the client keeps and sends back.
    {
      const before = endpointClient.readYourWritesSyncToken;
      await endpointClient.set("sync:k", "v");
      const after = endpointClient.readYourWritesSyncToken;
      const good = typeof after === "string" && after.length > 0 && after !== before;
      if (good) passed += 1;
      else failed += 1;
      console.log(`${good ? "ok  " : "FAIL"} [${mode.name}] upstash-sync-token kept by the client: ${show([before, after])}`);
    }

    // Upstash's `allow-key-locking` script flag, which redis-server refuses (so there is no direct
    // side to compare with): the client names the script by the SHA1 of its own text.
    {
      const flagged = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])";
      const script = endpointClient.createScript(flagged);
      const result = await outcome(async (r) => {
        const fallback = await script.exec(["akl:n"], [2]); // EVALSHA, NOSCRIPT, then EVAL
        const cached = await script.evalsha(["akl:n"], [3]);
        const loaded = await r.scriptLoad(flagged);
        return [Number(fallback), Number(cached), loaded === script.sha1];
      }, endpointClient);
      const good = JSON.stringify(result) === JSON.stringify({ ok: [2, 5, true] });
      if (good) passed += 1;
      else failed += 1;
      console.log(`${good ? "ok  " : "FAIL"} [${mode.name}] allow-key-locking script (exec, evalsha, scriptLoad sha1): ${show(result)}`);
    }
  }
} finally {
  direct.close();
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
