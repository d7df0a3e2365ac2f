// Stack 4 of bench/run: express + express-session + connect-redis (node-redis client), configured
// as their READMEs recommend (resave: false, saveUninitialized: false). The session is one JSON
// blob under one key: read when the request carries the cookie, written back whole when modified.
//
//   node app.mjs PORT        (REDIS_URL, SESSION_SECRET from the environment)
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

const port = Number(process.argv[2] ?? process.env.BENCH_PORT ?? 0);
const redisClient = createClient({ url: process.env.REDIS_URL });
redisClient.on("error", (err) => console.error("express-app: redis:", err.message));
await redisClient.connect();

const app = express();
app.use(
  session({
    store: new RedisStore({ client: redisClient, prefix: "sess:" }),
    secret: process.env.SESSION_SECRET ?? "bench-secret-bench-secret-bench-secret",
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 30 * 60 * 1000, httpOnly: true, sameSite: "lax" },
  }),
);

app.get("/anon", (_req, res) => {
  res.send("ok");
});

app.post("/login", (req, res, next) => {
  // Regenerate the id on login (fixation defence), then bind the user.
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.user = String(req.query.user ?? "");
    res.send("ok");
  });
});

app.get("/incr", (req, res) => {
  if (!req.session.user) {
    res.status(401).send("sign in first");
    return;
  }
  req.session.counter = (req.session.counter ?? 0) + 1;
  res.send(String(req.session.counter));
});

const server = app.listen(port, "127.0.0.1", () => {
  console.error(`express-app: listening on http://127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => {
  server.close();
  redisClient.quit().finally(() => process.exit(0));
});
