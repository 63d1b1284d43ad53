// Redis as a stock store: a hash per position (available, reserved, sold)
// and the seed statement's check-and-move as a Lua script (EVALSHA), 1 =
// reserved, 0 = out of stock. One connection per client (at most
// `redisConnectionsMax`; more clients share them), each with one call at a
// time: no pipelining, no auto-pipelining. Checkout, payment and the
// sweeper are Lua scripts too (bench/peers/lua/). Redis answers from
// memory: unless it runs with appendonly yes and appendfsync always, a
// success it answered can be lost in a crash; every result says which.

import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import {
  contentionUnits,
  type Driver,
  type RunResult,
  type RunSpec,
  type ScenarioName,
  Skipped,
} from "../lib/scenario.ts";
import { grouped } from "../lib/stats.ts";
import type { ToldCounts, Verdict } from "./check.ts";
import { checkoutStep } from "./checkout.ts";
import {
  checkoutHoldMs,
  closedLoop,
  commandTimeoutMs,
  connectTimeoutMs,
  cpuNote,
  defaultRedisUrl,
  errorNotes,
  hotProductId,
  hotWarehouseId,
  initialStock,
  lockNote,
  type Outcome,
  type PeerConfig,
  type Phase,
  type Position,
  peerConfig,
  positionAt,
  positionCount,
  race,
  raceTimeoutMs,
  randomPosition,
  redactedUrl,
  redisConnectionsMax,
  refuseOpenLoop,
  runResult,
  seedBatchSize,
  sleep,
  sweepBatchMax,
  sweepIntervalMs,
  Tally,
  timed,
  type WindowCpu,
  waitForLock,
  xorshift32,
} from "./common.ts";

/** Every key of the benchmark starts with this; a run deletes them all
 * first, and nothing else in the database. */
const keyPrefix = "stockd_bench:";
const expiriesKey = `${keyPrefix}expiries`;
const positionKey = (p: Position) => `${keyPrefix}inv:${p.productId}:${p.warehouseId}`;
const orderKeyPattern = `${keyPrefix}order:*`;
/** One run at a time uses the keys, across processes: a lock outside the
 * prefix (a run's reset deletes every key under it), with an expiry in
 * case its holder dies. */
const lockKey = "stockd_bench_lock";
/** The lock outlives the run's expected length by this much. */
const lockSlackMs = 300_000;
/** Deletes the lock only if this run still holds it. */
const unlockScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;
/** Units per reservation and per checkout line. */
const quantity = 1;

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8");
const scripts = {
  reserve: lua("reserve"),
  checkout: lua("checkout"),
  pay: lua("pay"),
  expire: lua("expire"),
} as const;
type Shas = Record<keyof typeof scripts, string>;

export function redisDriver(config: PeerConfig = peerConfig()): Driver {
  return new RedisDriver(config);
}

class RedisDriver implements Driver {
  readonly system = "redis";
  readonly client = "node" as const;
  readonly tool = "ioredis";
  private admin: Redis | null = null;
  private lockSeq = 0;

  constructor(private readonly config: PeerConfig) {}

  async run(spec: RunSpec): Promise<RunResult> {
    refuseOpenLoop(spec);
    this.admin ??= await connectRedis(this.config.redisUrl);
    const admin = this.admin;
    const token = `${process.pid}:${++this.lockSeq}`;
    const ttlMs = spec.warmupMs + spec.durationMs + raceTimeoutMs + lockSlackMs;
    const waitedMs = await waitForLock(`the ${keyPrefix} keys`, async () => {
      return (await admin.set(lockKey, token, "PX", ttlMs, "NX")) === "OK";
    });
    try {
      const result = await this.runLocked(spec, admin);
      result.notes?.push(...lockNote(`the ${keyPrefix} keys`, waitedMs));
      return result;
    } finally {
      await admin.eval(unlockScript, 1, lockKey, token);
    }
  }

  private async runLocked(spec: RunSpec, admin: Redis): Promise<RunResult> {
    const notes = [await durabilityNote(admin)];
    await resetKeys(admin, spec.scenario);
    const shas = await loadScripts(admin);
    const connectionCount = Math.min(spec.clients, redisConnectionsMax);
    const conns = await connectAll(this.config.redisUrl, connectionCount);
    if (connectionCount < spec.clients) {
      notes.push(
        `${spec.clients} clients share ${connectionCount} connections: up to ` +
          `${Math.ceil(spec.clients / connectionCount)} calls in flight on one`,
      );
    }
    let measured: Measured;
    try {
      const cpu = { start: 0, end: 0 };
      const onMeasure = async (mark: "start" | "stop") => {
        cpu[mark === "start" ? "start" : "end"] = await redisCpuUs(admin);
      };
      measured = await measure(spec, admin, conns, shas, onMeasure);
      if (spec.scenario !== "contention") measured.serverCpuUs = cpu.end - cpu.start;
    } finally {
      await Promise.all(conns.map((c) => c.quit().catch(() => c.disconnect())));
    }
    const verdict = await checkRedis(admin, spec.scenario, measured.told);
    notes.push(...measured.notes);
    if (measured.cpu !== undefined) {
      notes.push(cpuNote(measured.cpu, measured.serverCpuUs ?? null, measured.elapsedMs));
    }
    notes.push(...verdict.notes);
    return runResult(this, spec, {
      tally: measured.tally,
      elapsedMs: measured.elapsedMs,
      consistent: verdict.consistent,
      notes,
      serverCpuUs: measured.serverCpuUs ?? null,
    });
  }

  async close(): Promise<void> {
    const admin = this.admin;
    this.admin = null;
    await admin?.quit().catch(() => admin.disconnect());
  }
}

interface Measured {
  tally: Tally;
  elapsedMs: number;
  /** CPU over the window (not for the contention race). */
  cpu?: WindowCpu;
  told: ToldCounts;
  notes: string[];
  serverCpuUs?: number;
}

/** One connection, ready; Skipped when the server cannot be reached. No
 * reconnection and no offline queue: a lost connection fails its calls. */
async function connectRedis(url: string): Promise<Redis> {
  const r = new Redis(url, {
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableAutoPipelining: false,
    commandTimeout: commandTimeoutMs,
  });
  // The cause of a failed connection comes as an event; connect() only
  // says the connection closed.
  let cause: Error | null = null;
  r.on("error", (err: Error) => {
    cause ??= err;
  });
  // connectTimeout covers the TCP connection only, not the first answer.
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no connection in ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
  });
  try {
    await Promise.race([r.connect(), timeout]);
  } catch (err) {
    r.disconnect();
    const why = ((cause as Error | null) ?? (err as Error)).message;
    throw new Skipped(
      `Redis at ${redactedUrl(url)} not reachable (${why}); set ` +
        `STOCKD_BENCH_REDIS to a redis:// URL (default ${defaultRedisUrl})`,
    );
  } finally {
    clearTimeout(timer);
  }
  return r;
}

/** `count` connections, or none: those made are closed if one fails. */
async function connectAll(url: string, count: number): Promise<Redis[]> {
  const made = await Promise.allSettled(Array.from({ length: count }, () => connectRedis(url)));
  const conns = made.flatMap((m) => (m.status === "fulfilled" ? [m.value] : []));
  const failed = made.find((m) => m.status === "rejected");
  if (failed === undefined) return conns;
  for (const c of conns) c.disconnect();
  throw failed.reason;
}

/** What a success answered by this server is worth after a crash. */
async function durabilityNote(admin: Redis): Promise<string> {
  const version = /redis_version:(\S+)/.exec(await admin.info("server"))?.[1] ?? "unknown";
  const get = async (name: string) => {
    try {
      const r = (await admin.config("GET", name)) as string[];
      return r[1] ?? "unknown";
    } catch {
      return "unknown (CONFIG refused)";
    }
  };
  const aof = await get("appendonly");
  const fsync = await get("appendfsync");
  const durable = aof === "yes" && fsync === "always";
  return (
    `Redis ${version}, appendonly ${aof}, appendfsync ${fsync}: ` +
    (durable
      ? "durable, every write is fsynced to the AOF before it is answered"
      : "NOT durable, a success is answered from memory and can be lost in a crash " +
        "(durable only with appendonly yes and appendfsync always)")
  );
}

/** used_cpu_sys + used_cpu_user of the server, in microseconds. */
async function redisCpuUs(admin: Redis): Promise<number> {
  const info = await admin.info("cpu");
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return (field("used_cpu_sys") + field("used_cpu_user")) * 1e6;
}

async function loadScripts(admin: Redis): Promise<Shas> {
  const load = (text: string) => admin.script("LOAD", text) as Promise<string>;
  return {
    reserve: await load(scripts.reserve),
    checkout: await load(scripts.checkout),
    pay: await load(scripts.pay),
    expire: await load(scripts.expire),
  };
}

/** Deletes every key of the benchmark, then stocks every position. */
async function resetKeys(admin: Redis, scenario: ScenarioName): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", `${keyPrefix}*`, "COUNT", seedBatchSize);
    if (keys.length > 0) await admin.unlink(...keys);
    cursor = next;
  } while (cursor !== "0");
  for (let i = 0; i < positionCount; i += seedBatchSize) {
    const pipe = admin.pipeline();
    for (let j = i; j < Math.min(i + seedBatchSize, positionCount); j++) {
      const p = positionAt(j);
      pipe.hset(positionKey(p), "available", initialStock(scenario, p), "reserved", 0, "sold", 0);
    }
    await pipe.exec();
  }
}

/** A script's answer: 1 yes, 0 no; anything else is not an answer. */
function luaOutcome(answer: unknown): Outcome {
  if (answer === 1) return "ok";
  if (answer === 0) return "refused";
  throw new Error(`the script answered ${JSON.stringify(answer)}`);
}

const hot: Position = { productId: hotProductId, warehouseId: hotWarehouseId };

async function measure(
  spec: RunSpec,
  admin: Redis,
  conns: Redis[],
  shas: Shas,
  onMeasure: (mark: "start" | "stop") => Promise<void>,
): Promise<Measured> {
  const conn = (c: number) => conns[c % conns.length]!;
  const reserve = async (c: number, p: Position) =>
    luaOutcome(await conn(c).evalsha(shas.reserve, 1, positionKey(p), quantity));
  if (spec.scenario === "contention") {
    const tally = new Tally();
    const { elapsedMs, timedOut } = await race(spec.clients, tally, (c) => reserve(c, hot));
    const notes = errorNotes("reserve", tally);
    if (timedOut) notes.push("the race was stopped by its time limit");
    return { tally, elapsedMs, told: { reserved: tally.okAll, raceOk: tally.ok }, notes };
  }
  if (spec.scenario === "checkout") return checkoutLoop(spec, admin, conn, shas, onMeasure);
  const pick = spec.scenario === "hot" ? () => hot : randomPosition;
  const tally = new Tally();
  const randoms = Array.from({ length: spec.clients }, (_, c) => xorshift32(0x5eed + c * 7919));
  const { elapsedMs, cpu } = await closedLoop({ ...spec, onMeasure }, async (c, phase: Phase) => {
    const p = pick(randoms[c]!);
    await timed(tally, phase, () => reserve(c, p));
  });
  return {
    tally,
    elapsedMs,
    cpu,
    told: { reserved: tally.okAll },
    notes: errorNotes("reserve", tally),
  };
}

async function checkoutLoop(
  spec: RunSpec,
  admin: Redis,
  conn: (c: number) => Redis,
  shas: Shas,
  onMeasure: (mark: "start" | "stop") => Promise<void>,
): Promise<Measured> {
  const sweeper = new RedisSweeper(admin, shas.expire);
  sweeper.start();
  const orderSeq = new Array<number>(spec.clients).fill(0);
  try {
    const step = checkoutStep(spec.clients, {
      checkout: async (c, lines) => {
        const orderKey = `${keyPrefix}order:${c}:${orderSeq[c]!++}`;
        const keys = [orderKey, expiriesKey, ...lines.map(positionKey)];
        const units = lines.map(() => quantity);
        const answer = await conn(c).evalsha(
          shas.checkout,
          keys.length,
          ...keys,
          checkoutHoldMs,
          ...units,
        );
        return luaOutcome(answer) === "ok" ? orderKey : null;
      },
      pay: async (c, orderKey, lines) => {
        const keys = [orderKey, expiriesKey, ...lines.map(positionKey)];
        return luaOutcome(await conn(c).evalsha(shas.pay, keys.length, ...keys)) === "ok";
      },
    });
    const { elapsedMs, cpu } = await closedLoop({ ...spec, onMeasure }, step.run);
    return {
      tally: step.checkouts,
      elapsedMs,
      cpu,
      told: { checkouts: step.checkouts.okAll, payments: step.payments.okAll },
      notes: [
        ...step.notes(elapsedMs),
        `sweeper (Lua, every ${sweepIntervalMs} ms): ${sweeper.expiredOrders} orders expired in ` +
          `${sweeper.sweeps} calls` +
          (sweeper.errors > 0 ? `, ${sweeper.errors} failed (${sweeper.lastError})` : ""),
        "orders are hashes with a reserved_till field and an entry in a sorted set by expiry " +
          "(no Redis TTL: an order that vanished could not give its units back)",
      ],
    };
  } finally {
    await sweeper.stop();
  }
}

/** Expires orders past their hold while a checkout run goes on. */
class RedisSweeper {
  expiredOrders = 0;
  sweeps = 0;
  errors = 0;
  lastError: string | null = null;
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly admin: Redis,
    private readonly sha: string,
  ) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        let expired = 0;
        try {
          expired = Number(await this.admin.evalsha(this.sha, 1, expiriesKey, sweepBatchMax));
          this.expiredOrders += expired;
          this.sweeps++;
        } catch (err) {
          this.errors++;
          this.lastError = (err as Error).message;
        }
        if (expired < sweepBatchMax) await sleep(sweepIntervalMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

// ---- the no-oversell check -------------------------------------------------------------

/** As checkPostgres: every position never negative and adding up to what
 * it received; the successes told match the hashes; for checkout, the
 * orders' lines add up to each position's reserved and sold. */
async function checkRedis(
  admin: Redis,
  scenario: ScenarioName,
  told: ToldCounts,
): Promise<Verdict> {
  const failures: string[] = [];
  const counts = new Map<string, { available: number; reserved: number; sold: number }>();
  let negative = 0;
  let unbalanced = 0;
  let reserved = 0;
  let sold = 0;
  for (let i = 0; i < positionCount; i += seedBatchSize) {
    const pipe = admin.pipeline();
    const batch: Position[] = [];
    for (let j = i; j < Math.min(i + seedBatchSize, positionCount); j++) batch.push(positionAt(j));
    for (const p of batch) pipe.hmget(positionKey(p), "available", "reserved", "sold");
    const answers = (await pipe.exec()) ?? [];
    batch.forEach((p, k) => {
      const [err, v] = answers[k] ?? [new Error("no answer"), null];
      if (err !== null) throw err;
      const [a, r, s] = (v as (string | null)[]).map(Number) as [number, number, number];
      counts.set(positionKey(p), { available: a, reserved: r, sold: s });
      if (!(a >= 0 && r >= 0 && s >= 0)) negative++;
      if (a + r + s !== initialStock(scenario, p)) unbalanced++;
      reserved += r;
      sold += s;
    });
  }
  if (negative > 0) failures.push(`${negative} positions with a negative or missing count`);
  if (unbalanced > 0) {
    failures.push(`${unbalanced} positions where available + reserved + sold <> received`);
  }
  if (told.reserved !== undefined && told.reserved !== reserved) {
    failures.push(`clients were told ${told.reserved} successes, the hashes hold ${reserved}`);
  }
  if (told.raceOk !== undefined && told.raceOk !== contentionUnits) {
    failures.push(`${told.raceOk} successes in the race`);
  }
  const hotLeft = counts.get(positionKey(hot))?.available;
  if (scenario === "contention" && hotLeft !== 0) {
    failures.push(`${hotLeft} units left after the race`);
  }
  const facts = [`${grouped(counts.size)} positions`, `reserved ${grouped(reserved)}`];
  if (scenario === "checkout") {
    facts.push(`sold ${grouped(sold)}`, await checkOrders(admin, counts, told, failures));
  }
  const verdict = failures.length === 0 ? "held" : `FAILED: ${failures.join("; ")}`;
  return {
    consistent: failures.length === 0,
    notes: [`no-oversell check ${verdict} (${facts.join(", ")})`],
  };
}

async function checkOrders(
  admin: Redis,
  counts: Map<string, { reserved: number; sold: number }>,
  told: ToldCounts,
  failures: string[],
): Promise<string> {
  const held = new Map<string, number>();
  const soldBy = new Map<string, number>();
  const byStatus = new Map<string, number>();
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", orderKeyPattern, "COUNT", seedBatchSize);
    cursor = next;
    const pipe = admin.pipeline();
    for (const k of keys) pipe.hgetall(k);
    for (const [err, v] of (await pipe.exec()) ?? []) {
      if (err !== null) throw err;
      const o = v as Record<string, string>;
      const status = o.status ?? "?";
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      const into = status === "PENDING_PAYMENT" ? held : status === "PAID" ? soldBy : null;
      for (let i = 1; into !== null && i <= Number(o.n); i++) {
        const key = o[`k${i}`] ?? "?";
        into.set(key, (into.get(key) ?? 0) + Number(o[`q${i}`]));
      }
    }
  } while (cursor !== "0");
  let mismatch = 0;
  for (const [key, c] of counts) {
    if (c.reserved !== (held.get(key) ?? 0) || c.sold !== (soldBy.get(key) ?? 0)) mismatch++;
  }
  if (mismatch > 0)
    failures.push(`${mismatch} positions whose reserved or sold differ from orders`);
  const n = (s: string) => byStatus.get(s) ?? 0;
  const orders = [...byStatus.values()].reduce((a, b) => a + b, 0);
  if (told.checkouts !== undefined && told.checkouts !== orders) {
    failures.push(`clients were told ${told.checkouts} checkouts, there are ${orders} orders`);
  }
  if (told.payments !== undefined && told.payments !== n("PAID")) {
    failures.push(`clients were told ${told.payments} payments, ${n("PAID")} orders are paid`);
  }
  return (
    `orders ${grouped(orders)}: ${grouped(n("PAID"))} paid, ${grouped(n("EXPIRED"))} expired, ` +
    `${grouped(n("PENDING_PAYMENT"))} pending`
  );
}
