// What both PostgreSQL peers (node-postgres and pgbench) share: the first
// connection (Skipped when the server is not there), what the server is,
// the schema and stock of each run, how many connections are left, the
// sweeper that releases expired holds, and the server's CPU time.

import { readdirSync, readFileSync } from "node:fs";
import pg from "pg";
import {
  type ScenarioName,
  Skipped,
  uniformProductCount,
  uniformWarehouseCount,
} from "../lib/scenario.ts";
import { processCpuUs } from "../lib/server_child.ts";
import {
  commandTimeoutMs,
  connectTimeoutMs,
  defaultPgUrl,
  hotProductId,
  hotWarehouseId,
  initialStock,
  pgConnectionsSpare,
  positionAt,
  redactedUrl,
  sleep,
  sweepBatchMax,
  sweepIntervalMs,
  waitForLock,
} from "./common.ts";

export type SyncMode = "on" | "off";

const schemaSql = readFileSync(new URL("./sql/schema.sql", import.meta.url), "utf8");

/** A connection of its own (admin, sweeper), with `synchronous_commit`
 * set for the session; Skipped when the server cannot be reached. */
export async function connectPg(url: string, sync: SyncMode): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: connectTimeoutMs,
    query_timeout: commandTimeoutMs,
  });
  const t0 = performance.now();
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    const timedOut = performance.now() - t0 >= connectTimeoutMs;
    throw pgUnreachable(url, timedOut ? new Error(`no connection in ${connectTimeoutMs} ms`) : err);
  }
  // A connection lost later shows as the failure of the query that used it;
  // notices (a table to drop that does not exist) are not news.
  client.on("error", () => undefined);
  client.on("notice", () => undefined);
  await client.query(`SET synchronous_commit = ${sync}`);
  return client;
}

function pgUnreachable(url: string, cause: unknown): Skipped {
  const why = cause instanceof Error ? cause.message || cause.name : String(cause);
  return new Skipped(
    `PostgreSQL at ${redactedUrl(url)} not reachable (${why}); set STOCKD_BENCH_PG to a ` +
      `connection string (default ${defaultPgUrl})`,
  );
}

export interface PgServer {
  version: string;
  maxConnections: number;
  superuserReserved: number;
  /** fsync=off makes synchronous_commit=on as undurable as off. */
  fsync: string;
  /** Its processes can be read from /proc (the server runs on this host). */
  local: boolean;
}

/** What a success answered with `sync` is worth after a crash. */
export function durabilityText(sync: SyncMode, server: PgServer): string {
  if (server.fsync !== "on") {
    return `NOT durable: the server runs with fsync=${server.fsync}`;
  }
  return sync === "on"
    ? "durable, a success is answered once its WAL is flushed to disk"
    : "NOT durable, a success is answered before its WAL is flushed (a crash can lose " +
        "the successes of the last 3 x wal_writer_delay; what remains is consistent)";
}

export async function pgServer(admin: pg.Client, url: string): Promise<PgServer> {
  const r = await admin.query<{
    version: string;
    max: number;
    reserved: number;
    fsync: string;
  }>(
    `SELECT current_setting('server_version') AS version,
            current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int AS reserved,
            current_setting('fsync') AS fsync`,
  );
  const row = r.rows[0]!;
  return {
    version: row.version,
    maxConnections: row.max,
    superuserReserved: row.reserved,
    fsync: row.fsync,
    local: isLocalHost(url) && postgresPids().length > 0,
  };
}

function isLocalHost(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return false;
  }
  return host === "" || host === "localhost" || host === "127.0.0.1" || host === "[::1]";
}

/** Connections still free on the server now, less `pgConnectionsSpare`
 * and the ones the caller is about to open besides (`extra`). */
export async function pgConnectionsFree(
  admin: pg.Client,
  server: PgServer,
  extra: number,
): Promise<number> {
  const r = await admin.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'",
  );
  const used = r.rows[0]?.n ?? 0;
  return Math.max(
    1,
    server.maxConnections - server.superuserReserved - used - pgConnectionsSpare - extra,
  );
}

/** The advisory lock of the stockd_bench schema (any constant will do,
 * the same in every process). */
const schemaLockKey = 0x570cd;

/** One run at a time uses the schema, across processes (and both
 * PostgreSQL peers): held by `admin`'s session until `unlockSchema`, or
 * until the session ends. Returns how long it waited. */
export function lockSchema(admin: pg.Client): Promise<number> {
  return waitForLock("the stockd_bench schema", async () => {
    const r = await admin.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [
      schemaLockKey,
    ]);
    return r.rows[0]?.ok === true;
  });
}

export async function unlockSchema(admin: pg.Client): Promise<void> {
  await admin.query("SELECT pg_advisory_unlock($1)", [schemaLockKey]);
}

/** Drops and creates the tables, stocks every position for `scenario`,
 * and leaves the server with nothing to clean up from the setup. */
export async function recreateSchema(admin: pg.Client, scenario: ScenarioName): Promise<string[]> {
  const notes: string[] = [];
  await admin.query(schemaSql);
  const hot = positionAt(0);
  await admin.query(
    `INSERT INTO stockd_bench.inventory (product_id, warehouse_id, available)
     SELECT p, w, CASE WHEN p = $1 AND w = $2 THEN $3::bigint ELSE $4::bigint END
     FROM generate_series(1, $5::int) AS p, generate_series(1, $6::int) AS w`,
    [
      hotProductId,
      hotWarehouseId,
      initialStock(scenario, hot),
      initialStock(scenario, positionAt(1)),
      uniformProductCount,
      uniformWarehouseCount,
    ],
  );
  await admin.query("VACUUM ANALYZE stockd_bench.inventory");
  try {
    // The setup's WAL written out now, not by a checkpoint in the window.
    await admin.query("CHECKPOINT");
  } catch (err) {
    notes.push(`no CHECKPOINT before the run (${(err as Error).message})`);
  }
  return notes;
}

// ---- the sweeper --------------------------------------------------------------------

/** Releases expired holds while a checkout run goes on: every
 * `sweepIntervalMs`, one transaction per `sweepBatchMax` expired orders. */
export class PgSweeper {
  expiredOrders = 0;
  sweeps = 0;
  errors = 0;
  lastError: string | null = null;
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly client: pg.Client) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        let expired = 0;
        try {
          expired = await sweepOnce(this.client);
          this.expiredOrders += expired;
          this.sweeps++;
        } catch (err) {
          this.errors++;
          this.lastError = (err as Error).message;
          await this.client.query("ROLLBACK").catch(() => undefined);
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

/** One sweep: expired pending orders become EXPIRED, their holds RELEASED
 * and their units available again; returns the orders expired. */
async function sweepOnce(c: pg.Client): Promise<number> {
  await c.query("BEGIN");
  // SKIP LOCKED: an order a payment is working on is left for the next
  // sweep (the payment then finds it paid, or the sweep finds it expired).
  const orders = await c.query<{ id: string }>({
    name: "sweep_orders",
    text: `UPDATE stockd_bench.orders SET status = 'EXPIRED'
           WHERE id IN (SELECT id FROM stockd_bench.orders
                        WHERE status = 'PENDING_PAYMENT' AND reserved_till <= now()
                        ORDER BY reserved_till LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING id`,
    values: [sweepBatchMax],
  });
  if (orders.rows.length === 0) {
    await c.query("ROLLBACK");
    return 0;
  }
  const holds = await c.query<{ product_id: number; warehouse_id: number; quantity: string }>({
    name: "sweep_holds",
    text: `UPDATE stockd_bench.holds SET status = 'RELEASED'
           WHERE order_id = ANY($1::bigint[]) AND status = 'HELD'
           RETURNING product_id, warehouse_id, quantity`,
    values: [orders.rows.map((r) => r.id)],
  });
  const p = holds.rows.map((h) => h.product_id);
  const w = holds.rows.map((h) => h.warehouse_id);
  const q = holds.rows.map((h) => h.quantity);
  // Rows locked in key order, the order checkouts and payments lock them
  // in: the sweeper never waits on them in a cycle (no deadlocks).
  await c.query({
    name: "sweep_lock",
    text: `SELECT 1 FROM stockd_bench.inventory
           WHERE (product_id, warehouse_id) IN (SELECT * FROM unnest($1::int[], $2::int[]))
           ORDER BY product_id, warehouse_id FOR UPDATE`,
    values: [p, w],
  });
  await c.query({
    name: "sweep_release",
    text: `UPDATE stockd_bench.inventory AS i
           SET available = i.available + d.q, reserved = i.reserved - d.q
           FROM (SELECT p, w, sum(q) AS q
                 FROM unnest($1::int[], $2::int[], $3::bigint[]) AS t (p, w, q)
                 GROUP BY p, w) AS d
           WHERE i.product_id = d.p AND i.warehouse_id = d.w`,
    values: [p, w, q],
  });
  await c.query("COMMIT");
  return orders.rows.length;
}

// ---- the server's CPU ---------------------------------------------------------------

function postgresPids(): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, "utf8").trim() === "postgres") pids.push(Number(e));
    } catch {
      // Gone since the listing.
    }
  }
  return pids;
}

/** CPU time of every `postgres` process on this host (backends, WAL
 * writer, checkpointer, autovacuum), in microseconds, between `start` and
 * `stop`. A process that exits within the window takes its time with it:
 * use it around a window in which the connections stay open. */
export function postgresCpuMeter(): { start(): void; stop(): void; spentUs(): number } {
  const read = () => {
    const m = new Map<number, number>();
    for (const pid of postgresPids()) m.set(pid, processCpuUs(pid) ?? 0);
    return m;
  };
  let a = new Map<number, number>();
  let b = a;
  return {
    start: () => {
      a = read();
    },
    stop: () => {
      b = read();
    },
    spentUs: () => {
      let us = 0;
      for (const [pid, end] of b) us += end - (a.get(pid) ?? 0);
      return us;
    },
  };
}
