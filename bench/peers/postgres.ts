// PostgreSQL as our users run it today: the seed article's conditional
// UPDATE through node-postgres. A pg.Pool of at most `clients` connections
// (max_connections caps it), each client a loop of awaited queries, every
// statement prepared (`name`), `synchronous_commit` set on each connection
// as it joins the pool. A success is an UPDATE that touched 1 row; 0 rows is
// out of stock; anything else is an error.

import pg from "pg";
import type { Driver, RunResult, RunSpec } from "../lib/scenario.ts";
import { checkPostgres } from "./check.ts";
import { checkoutStep } from "./checkout.ts";
import {
  checkoutHoldMs,
  closedLoop,
  commandTimeoutMs,
  cpuNote,
  errorNotes,
  hotProductId,
  hotWarehouseId,
  lockNote,
  type Outcome,
  type PeerConfig,
  type Position,
  peerConfig,
  pgPoolSizeMax,
  race,
  randomPosition,
  refuseOpenLoop,
  runResult,
  Tally,
  timed,
  type WindowCpu,
  xorshift32,
} from "./common.ts";
import {
  connectPg,
  durabilityText,
  lockSchema,
  type PgServer,
  PgSweeper,
  pgConnectionsFree,
  pgServer,
  postgresCpuMeter,
  recreateSchema,
  type SyncMode,
  unlockSchema,
} from "./pg_db.ts";

/** How long a client waits for a free pool connection: with more clients
 * than connections the wait is part of the workload, not a failure. */
const poolWaitTimeoutMs = 30_000;

/** The seed article's statement: 1 row updated = reserved, 0 = out of stock. */
const reserveSql = `UPDATE stockd_bench.inventory
  SET available = available - $3, reserved = reserved + $3
  WHERE product_id = $1 AND warehouse_id = $2 AND available >= $3`;

/** The order and its holds, in one statement; a row per hold. */
const createOrderSql = `WITH o AS (
    INSERT INTO stockd_bench.orders (status, reserved_till)
    VALUES ('PENDING_PAYMENT', now() + $1::double precision * interval '1 millisecond')
    RETURNING id, reserved_till)
  INSERT INTO stockd_bench.holds (order_id, product_id, warehouse_id, quantity, expires_at, status)
  SELECT o.id, l.p, l.w, l.q, o.reserved_till, 'HELD'
  FROM o, unnest($2::int[], $3::int[], $4::bigint[]) AS l (p, w, q)
  RETURNING order_id`;

const payOrderSql = `UPDATE stockd_bench.orders SET status = 'PAID'
  WHERE id = $1 AND status = 'PENDING_PAYMENT' AND reserved_till > now()`;
const sellSql = `UPDATE stockd_bench.inventory
  SET reserved = reserved - $3, sold = sold + $3
  WHERE product_id = $1 AND warehouse_id = $2 AND reserved >= $3`;
const sellHoldsSql = `UPDATE stockd_bench.holds SET status = 'SOLD'
  WHERE order_id = $1 AND status = 'HELD'`;

/** Units per reservation and per checkout line. */
const quantity = 1;

export function postgresDriver(sync: SyncMode, config: PeerConfig = peerConfig()): Driver {
  return new PostgresDriver(sync, config);
}

class PostgresDriver implements Driver {
  readonly system: string;
  readonly client = "node" as const;
  readonly tool = "pg";
  private admin: pg.Client | null = null;
  private server: PgServer | null = null;

  constructor(
    private readonly sync: SyncMode,
    private readonly config: PeerConfig,
  ) {
    this.system = `postgres sync=${sync}`;
  }

  async run(spec: RunSpec): Promise<RunResult> {
    refuseOpenLoop(spec);
    this.admin ??= await connectPg(this.config.pgUrl, this.sync);
    this.server ??= await pgServer(this.admin, this.config.pgUrl);
    const admin = this.admin;
    const waitedMs = await lockSchema(admin);
    try {
      const result = await this.runLocked(spec, admin, this.server);
      result.notes?.push(...lockNote("the stockd_bench schema", waitedMs));
      return result;
    } finally {
      await unlockSchema(admin);
    }
  }

  private async runLocked(spec: RunSpec, admin: pg.Client, server: PgServer): Promise<RunResult> {
    const notes = await recreateSchema(admin, spec.scenario);
    const sweeperConnections = spec.scenario === "checkout" ? 1 : 0;
    const free = await pgConnectionsFree(admin, server, sweeperConnections);
    const poolSize = Math.min(spec.clients, free, pgPoolSizeMax);
    const pool = openPool(this.config.pgUrl, this.sync, poolSize);
    let measured: Measured;
    try {
      await warmPool(pool, poolSize, this.sync);
      const cpu = server.local ? postgresCpuMeter() : null;
      const onMeasure = (mark: "start" | "stop") => (mark === "start" ? cpu?.start() : cpu?.stop());
      measured = await this.measure(pool, spec, onMeasure);
      if (cpu !== null && spec.scenario !== "contention") measured.serverCpuUs = cpu.spentUs();
    } finally {
      await pool.end();
    }
    const verdict = await checkPostgres(admin, spec.scenario, measured.told);
    notes.push(...this.notes(spec, server, poolSize, free), ...measured.notes);
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

  private async measure(
    pool: pg.Pool,
    spec: RunSpec,
    onMeasure: (mark: "start" | "stop") => void,
  ): Promise<Measured> {
    switch (spec.scenario) {
      case "hot":
        return reserveLoop(pool, spec, onMeasure, () => hot);
      case "uniform":
        return reserveLoop(pool, spec, onMeasure, randomPosition);
      case "checkout":
        return this.checkoutLoop(pool, spec, onMeasure);
      case "contention":
        return contentionRace(pool, spec);
    }
  }

  private async checkoutLoop(
    pool: pg.Pool,
    spec: RunSpec,
    onMeasure: (mark: "start" | "stop") => void,
  ): Promise<Measured> {
    const sweeperClient = await connectPg(this.config.pgUrl, this.sync);
    const sweeper = new PgSweeper(sweeperClient);
    sweeper.start();
    try {
      const step = checkoutStep(spec.clients, {
        checkout: (_client, lines) => checkout(pool, lines),
        pay: (_client, orderId, lines) => pay(pool, orderId, lines),
      });
      const { elapsedMs, cpu } = await closedLoop({ ...spec, onMeasure }, step.run);
      return {
        tally: step.checkouts,
        elapsedMs,
        cpu,
        told: { checkouts: step.checkouts.okAll, payments: step.payments.okAll },
        notes: [
          ...step.notes(elapsedMs),
          `sweeper: ${sweeper.expiredOrders} orders expired in ${sweeper.sweeps} sweeps` +
            (sweeper.errors > 0 ? `, ${sweeper.errors} failed (${sweeper.lastError})` : ""),
        ],
      };
    } finally {
      await sweeper.stop();
      await sweeperClient.end();
    }
  }

  private notes(spec: RunSpec, server: PgServer, poolSize: number, free: number): string[] {
    const notes = [
      `PostgreSQL ${server.version}; synchronous_commit=${this.sync} set on each pool ` +
        `connection (checked with SHOW): ${durabilityText(this.sync, server)}`,
    ];
    if (poolSize < spec.clients) {
      notes.push(
        `${spec.clients} clients share a pool of ${poolSize} connections ` +
          `(max_connections ${server.maxConnections}, ${free} free, at most ${pgPoolSizeMax}): ` +
          "the wait for a connection is part of the latency",
      );
    }
    if (!server.local) notes.push("server CPU not measured: the server is not on this host");
    return notes;
  }

  async close(): Promise<void> {
    const admin = this.admin;
    this.admin = null;
    await admin?.end();
  }
}

interface Measured {
  tally: Tally;
  elapsedMs: number;
  /** CPU over the window (not for the contention race). */
  cpu?: WindowCpu;
  told: { reserved?: number; checkouts?: number; payments?: number; raceOk?: number };
  notes: string[];
  serverCpuUs?: number;
}

const hot: Position = { productId: hotProductId, warehouseId: hotWarehouseId };

function openPool(url: string, sync: SyncMode, size: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: size,
    connectionTimeoutMillis: poolWaitTimeoutMs,
    idleTimeoutMillis: 0,
    query_timeout: commandTimeoutMs,
  });
  // A query queued here is the first on the connection: it runs before any
  // the pool hands out.
  pool.on("connect", (client) => {
    client.on("notice", () => undefined);
    client.query(`SET synchronous_commit = ${sync}`).catch(() => undefined);
  });
  // An idle connection that breaks is replaced; the run's queries report
  // their own failures.
  pool.on("error", () => undefined);
  return pool;
}

/** Opens every connection of the pool before the clock starts, and checks
 * each one's synchronous_commit. */
async function warmPool(pool: pg.Pool, size: number, sync: SyncMode): Promise<void> {
  const clients = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  try {
    for (const c of clients) {
      const r = await c.query<{ synchronous_commit: string }>("SHOW synchronous_commit");
      const got = r.rows[0]?.synchronous_commit;
      if (got !== sync) throw new Error(`a pool connection has synchronous_commit=${got}`);
    }
  } finally {
    for (const c of clients) c.release();
  }
}

/** An UPDATE's row count as an answer: 1 reserved, 0 refused; anything
 * else is not an answer this statement can give. */
function rowsOutcome(rowCount: number | null): Outcome {
  if (rowCount === 1) return "ok";
  if (rowCount === 0) return "refused";
  throw new Error(`the UPDATE touched ${rowCount} rows`);
}

async function reserve(q: pg.Pool | pg.PoolClient, p: Position): Promise<Outcome> {
  const r = await q.query({
    name: "reserve",
    text: reserveSql,
    values: [p.productId, p.warehouseId, quantity],
  });
  return rowsOutcome(r.rowCount);
}

async function reserveLoop(
  pool: pg.Pool,
  spec: RunSpec,
  onMeasure: (mark: "start" | "stop") => void,
  pick: (random: () => number) => Position,
): Promise<Measured> {
  const tally = new Tally();
  const randoms = Array.from({ length: spec.clients }, (_, c) => xorshift32(0x5eed + c * 7919));
  const { elapsedMs, cpu } = await closedLoop({ ...spec, onMeasure }, async (c, phase) => {
    const p = pick(randoms[c]!);
    await timed(tally, phase, () => reserve(pool, p));
  });
  return {
    tally,
    elapsedMs,
    cpu,
    told: { reserved: tally.okAll },
    notes: errorNotes("reserve", tally),
  };
}

/** No server CPU here: a race of a fraction of a second is below what
 * /proc's clock ticks resolve over many backends. */
async function contentionRace(pool: pg.Pool, spec: RunSpec): Promise<Measured> {
  const tally = new Tally();
  const { elapsedMs, timedOut } = await race(spec.clients, tally, () => reserve(pool, hot));
  const notes = errorNotes("reserve", tally);
  if (timedOut) notes.push("the race was stopped by its time limit");
  return { tally, elapsedMs, told: { reserved: tally.okAll, raceOk: tally.ok }, notes };
}

/** A pool connection for one transaction; given back broken (closed) if
 * the transaction could not be ended cleanly. */
async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken = false;
  try {
    await c.query("BEGIN");
    return await fn(c);
  } catch (err) {
    try {
      await c.query("ROLLBACK");
    } catch {
      broken = true;
    }
    throw err;
  } finally {
    c.release(broken);
  }
}

class Refused extends Error {}

/** Reserves every line with the seed statement, in key order (the lines
 * come sorted: checkouts lock rows in the same order and never deadlock),
 * all or nothing; then the order and its holds. The order's id, or null
 * when a line is out of stock (rolled back). */
async function checkout(pool: pg.Pool, lines: Position[]): Promise<string | null> {
  try {
    return await inTransaction(pool, async (c) => {
      for (const line of lines) {
        if ((await reserve(c, line)) !== "ok") throw new Refused();
      }
      const r = await c.query<{ order_id: string }>({
        name: "create_order",
        text: createOrderSql,
        values: [
          checkoutHoldMs,
          lines.map((l) => l.productId),
          lines.map((l) => l.warehouseId),
          lines.map(() => quantity),
        ],
      });
      if (r.rowCount !== lines.length) throw new Error(`${r.rowCount} holds written`);
      await c.query("COMMIT");
      return r.rows[0]!.order_id;
    });
  } catch (err) {
    if (err instanceof Refused) return null;
    throw err;
  }
}

/** Pays a pending, unexpired order: its lines move from reserved to sold
 * (in key order), its holds become SOLD. False when the order is no longer
 * pending (the sweeper expired it). */
async function pay(pool: pg.Pool, orderId: string, lines: Position[]): Promise<boolean> {
  try {
    return await inTransaction(pool, async (c) => {
      const o = await c.query({ name: "pay_order", text: payOrderSql, values: [orderId] });
      if (rowsOutcome(o.rowCount) !== "ok") throw new Refused();
      for (const l of lines) {
        const r = await c.query({
          name: "sell",
          text: sellSql,
          values: [l.productId, l.warehouseId, quantity],
        });
        if (r.rowCount !== 1) throw new Error(`order ${orderId}: a line not reserved to sell`);
      }
      const h = await c.query({ name: "sell_holds", text: sellHoldsSql, values: [orderId] });
      if (h.rowCount !== lines.length) throw new Error(`order ${orderId}: ${h.rowCount} holds`);
      await c.query("COMMIT");
      return true;
    });
  } catch (err) {
    if (err instanceof Refused) return false;
    throw err;
  }
}
