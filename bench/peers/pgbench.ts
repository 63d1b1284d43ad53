// The same statements as bench/peers/postgres.ts, driven by pgbench (a C
// client, one libpq connection per client, `-M prepared`) from the custom
// scripts in bench/peers/sql/pgbench_*.sql. synchronous_commit comes from
// PGOPTIONS. pgbench counts transactions, not successes: successes are
// counted in the database (reserved units, orders, paid orders) before and
// after the measured run. Latency percentiles come from pgbench's
// per-transaction log (-l): one entry per script run, refusals included.

import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import {
  contentionUnits,
  type Driver,
  type RunResult,
  type RunSpec,
  Skipped,
} from "../lib/scenario.ts";
import { machineBusyUs } from "../lib/server_child.ts";
import { LatencyHistogram, round } from "../lib/stats.ts";
import { checkPostgres } from "./check.ts";
import {
  checkoutHoldMs,
  hotProductId,
  hotWarehouseId,
  lockNote,
  type PeerConfig,
  peerConfig,
  refuseOpenLoop,
  runResult,
  Tally,
} from "./common.ts";
import {
  connectPg,
  durabilityText,
  lockSchema,
  type PgServer,
  PgSweeper,
  pgConnectionsFree,
  pgServer,
  recreateSchema,
  type SyncMode,
  unlockSchema,
} from "./pg_db.ts";

/** pgbench's worker threads at most (-j); the machine's cores cap it too. */
const pgbenchThreadsMax = 16;
/** How long pgbench may run past its -T before it is killed. */
const pgbenchGraceMs = 30_000;
/** A contention run's time limit (pgbench runs -t, a count, not -T). */
const pgbenchRaceTimeoutMs = 60_000;
/** pgbench's output kept at most (its log files are read from disk). */
const pgbenchOutputBytesMax = 16 * 1024 * 1024;

const sqlDir = fileURLToPath(new URL("./sql/", import.meta.url));

export function pgbenchDriver(sync: SyncMode, config: PeerConfig = peerConfig()): Driver {
  return new PgbenchDriver(sync, config);
}

interface DbCounts {
  /** Units taken from available: reserved and sold. */
  units: number;
  orders: number;
  paid: number;
}

class PgbenchDriver implements Driver {
  readonly system: string;
  readonly client = "c" as const;
  readonly tool = "pgbench";
  private admin: pg.Client | null = null;
  private server: PgServer | null = null;
  private version: string | null = null;

  constructor(
    private readonly sync: SyncMode,
    private readonly config: PeerConfig,
  ) {
    this.system = `postgres sync=${sync} (pgbench)`;
  }

  async run(spec: RunSpec): Promise<RunResult> {
    refuseOpenLoop(spec);
    this.version ??= await pgbenchVersion(this.config.pgbenchPath);
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
    const clients = Math.min(spec.clients, free);
    const threads = Math.min(clients, availableParallelism(), pgbenchThreadsMax);
    const bench = (args: string[], logDir: string | null, timeoutMs: number) =>
      runPgbench(this.config, this.sync, spec, clients, threads, args, logDir, timeoutMs);
    notes.push(
      `${this.version}, -M prepared, -c ${clients} -j ${threads}; synchronous_commit=${this.sync} ` +
        `from PGOPTIONS: ${durabilityText(this.sync, server)}`,
      "successes counted in the database before and after the run; latency from pgbench's " +
        "per-transaction log (-l), every transaction of the measured run, refusals included",
    );
    if (clients < spec.clients) {
      notes.push(
        `ran with -c ${clients}, not ${spec.clients}: max_connections ${server.maxConnections}, ` +
          `${free} free (pgbench opens one connection per client)`,
      );
    }
    const measured =
      spec.scenario === "contention"
        ? await this.race(admin, spec, clients, bench)
        : await this.timedRun(admin, spec, bench);
    const verdict = await checkPostgres(admin, spec.scenario, measured.told);
    notes.push(...measured.notes, ...verdict.notes);
    notes.push("server CPU not measured: pgbench's backends exit with it");
    return runResult(this, spec, {
      tally: measured.tally,
      elapsedMs: measured.elapsedMs,
      consistent: verdict.consistent,
      notes,
      latency: measured.latency,
    });
  }

  /** hot, uniform, checkout: a warm-up run, then the measured one. */
  private async timedRun(admin: pg.Client, spec: RunSpec, bench: Bench): Promise<Measured> {
    const sweeperClient =
      spec.scenario === "checkout" ? await connectPg(this.config.pgUrl, this.sync) : null;
    const sweeper = sweeperClient === null ? null : new PgSweeper(sweeperClient);
    sweeper?.start();
    try {
      const warmupS = Math.ceil(spec.warmupMs / 1000);
      if (warmupS > 0) await bench(["-T", String(warmupS)], null, warmupS * 1000 + pgbenchGraceMs);
      const durationS = Math.max(1, Math.round(spec.durationMs / 1000));
      const before = await dbCounts(admin);
      const busy0 = machineBusyUs();
      const t0 = performance.now();
      const out = await withLogDir((dir) =>
        bench(["-T", String(durationS)], dir, durationS * 1000 + pgbenchGraceMs),
      );
      const busy1 = machineBusyUs();
      const wallMs = performance.now() - t0;
      const after = await dbCounts(admin);
      const notes = [...out.notes];
      if (busy0 !== null && busy1 !== null) {
        notes.push(
          `the machine was busy ${round((busy1 - busy0) / 1000 / wallMs, 2)} of ` +
            `${availableParallelism()} cores (pgbench, PostgreSQL and anything else)`,
        );
      }
      if (durationS * 1000 !== spec.durationMs) {
        notes.push(`pgbench -T takes whole seconds: ran ${durationS} s`);
      }
      const told: Measured["told"] = {};
      let ok = after.units - before.units;
      if (spec.scenario === "checkout") {
        ok = after.orders - before.orders;
        const payments = after.paid - before.paid;
        notes.push(
          `measured: checkouts (orders created in the run); a pgbench transaction is a checkout, ` +
            `and for every even order id its payment too (latency is the pair's); payments: ` +
            `${payments} (${Math.round(payments / durationS)}/s); holds expire after ` +
            `${checkoutHoldMs} ms; sweeper (a Node connection beside pgbench): ` +
            `${sweeper?.expiredOrders ?? 0} orders expired` +
            (sweeper !== null && sweeper.errors > 0 ? `, ${sweeper.errors} sweeps failed` : ""),
        );
      }
      return { ...tallyOf(out, ok), elapsedMs: durationS * 1000, told, notes };
    } finally {
      await sweeper?.stop();
      await sweeperClient?.end();
    }
  }

  /** contention: pgbench runs a count, not a time, and cannot stop a
   * client at its first refusal: as many attempts as the Node race makes
   * (every unit, and one refusal per client), spread over the clients. */
  private async race(
    admin: pg.Client,
    spec: RunSpec,
    clients: number,
    bench: Bench,
  ): Promise<Measured> {
    const perClient = Math.ceil((contentionUnits + spec.clients) / clients);
    const out = await withLogDir((dir) =>
      bench(["-t", String(perClient)], dir, pgbenchRaceTimeoutMs),
    );
    const r = await admin.query<{ reserved: string }>(
      `SELECT reserved::text FROM stockd_bench.inventory
       WHERE product_id = $1 AND warehouse_id = $2`,
      [hotProductId, hotWarehouseId],
    );
    const ok = Number(r.rows[0]?.reserved ?? 0);
    const notes = [
      ...out.notes,
      `-t ${perClient}: ${clients * perClient} attempts for ${contentionUnits} units; ` +
        "time is pgbench's (transactions / tps, without connection time)",
    ];
    const elapsedMs = out.tps > 0 ? (out.processed / out.tps) * 1000 : 0;
    return { ...tallyOf(out, ok), elapsedMs, told: { raceOk: ok }, notes };
  }

  async close(): Promise<void> {
    const admin = this.admin;
    this.admin = null;
    await admin?.end();
  }
}

interface Measured {
  tally: Tally;
  latency: LatencyHistogram;
  elapsedMs: number;
  told: { raceOk?: number };
  notes: string[];
}

/** Successes from the database; the rest of pgbench's transactions were
 * refusals; its failed transactions and aborted clients are errors. */
function tallyOf(out: PgbenchOut, ok: number): Pick<Measured, "tally" | "latency"> {
  const tally = new Tally();
  tally.ok = ok;
  tally.refused = Math.max(0, out.processed - ok);
  tally.errors = out.failed + out.aborted;
  return { tally, latency: out.latency };
}

async function dbCounts(c: pg.Client): Promise<DbCounts> {
  const r = await c.query<{ units: string; orders: number; paid: number }>(
    `SELECT (SELECT sum(reserved + sold) FROM stockd_bench.inventory)::text AS units,
            (SELECT count(*) FROM stockd_bench.orders)::int AS orders,
            (SELECT count(*) FROM stockd_bench.orders WHERE status = 'PAID')::int AS paid`,
  );
  const row = r.rows[0]!;
  return { units: Number(row.units), orders: row.orders, paid: row.paid };
}

// ---- running pgbench ------------------------------------------------------------------

type Bench = (args: string[], logDir: string | null, timeoutMs: number) => Promise<PgbenchOut>;

interface PgbenchOut {
  processed: number;
  failed: number;
  /** Clients that stopped on an error (pgbench aborts a client on the
   * first one). */
  aborted: number;
  tps: number;
  latency: LatencyHistogram;
  notes: string[];
}

async function pgbenchVersion(path: string): Promise<string> {
  try {
    const { stdout } = await exec(path, ["--version"], {}, 10_000);
    return stdout.trim();
  } catch (err) {
    throw new Skipped(
      `pgbench not usable at "${path}" (${(err as Error).message.split("\n")[0]}); install ` +
        "PostgreSQL's client tools or set STOCKD_BENCH_PGBENCH to its path",
    );
  }
}

async function runPgbench(
  config: PeerConfig,
  sync: SyncMode,
  spec: RunSpec,
  clients: number,
  threads: number,
  args: string[],
  logDir: string | null,
  timeoutMs: number,
): Promise<PgbenchOut> {
  const all = [
    "-n",
    "-M",
    "prepared",
    "-f",
    join(sqlDir, `pgbench_${spec.scenario}.sql`),
    "-D",
    `hold_ms=${checkoutHoldMs}`,
    "-c",
    String(clients),
    "-j",
    String(threads),
    ...args,
    ...(logDir === null ? [] : ["-l", `--log-prefix=${join(logDir, "tx")}`]),
    config.pgUrl,
  ];
  const env = { ...process.env, PGOPTIONS: `-c synchronous_commit=${sync}` };
  let stdout: string;
  let stderr: string;
  try {
    ({ stdout, stderr } = await exec(config.pgbenchPath, all, env, timeoutMs));
  } catch (err) {
    // Exit status 2: some clients aborted; the counts are still printed.
    const e = err as Error & { code?: unknown; stdout?: string; stderr?: string };
    if (e.code !== 2 || e.stdout === undefined) throw err;
    stdout = e.stdout;
    stderr = e.stderr ?? "";
  }
  const aborted = stderr.split("\n").filter((l) => / aborted in command /.test(l));
  const notes = aborted.length > 0 ? [`pgbench: ${aborted[0]!.slice(0, 300)}`] : [];
  return {
    processed: numberAfter(stdout, /number of transactions actually processed: (\d+)/),
    failed: numberAfter(stdout, /number of failed transactions: (\d+)/),
    aborted: aborted.length,
    tps: numberAfter(stdout, /tps = ([\d.]+) \(without initial connection time\)/),
    latency: logDir === null ? new LatencyHistogram() : await readLogs(logDir),
    notes,
  };
}

function numberAfter(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m === null ? 0 : Number(m[1]);
}

function exec(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: pgbenchOutputBytesMax },
      (err, stdout, stderr) => {
        if (err !== null) reject(Object.assign(err, { stdout, stderr }));
        else resolve({ stdout, stderr });
      },
    );
  });
}

async function withLogDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "stockd-pgbench-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** pgbench -l lines: client_id transaction_no time_us script_no epoch_s
 * epoch_us; a failed transaction has a word in place of its time. Read a
 * line at a time: a long run logs millions. */
async function readLogs(dir: string): Promise<LatencyHistogram> {
  const h = new LatencyHistogram();
  for (const name of await readdir(dir)) {
    const lines = createInterface({
      input: createReadStream(join(dir, name)),
      crlfDelay: Infinity,
    });
    for await (const line of lines) {
      const us = Number(line.split(" ", 3)[2]);
      if (line !== "" && Number.isFinite(us)) h.record(us * 1000);
    }
  }
  return h;
}
