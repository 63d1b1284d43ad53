// What the peer drivers (PostgreSQL through node-postgres and pgbench,
// Redis through ioredis) share: where the servers are, the bounds of every
// run, the positions of each workload, and a closed-loop runner that counts
// answers (never transport success) in the measured window only.

import { availableParallelism } from "node:os";
import {
  checkoutLineCount,
  contentionUnits,
  type Driver,
  type RunResult,
  type RunSpec,
  type ScenarioName,
  Skipped,
  uniformProductCount,
  uniformWarehouseCount,
} from "../lib/scenario.ts";
import { machineBusyUs } from "../lib/server_child.ts";
import { LatencyHistogram, ratePerS, round } from "../lib/stats.ts";

// ---- where the servers are --------------------------------------------------------

export const defaultPgUrl = "postgres://postgres@127.0.0.1:5432/postgres";
export const defaultRedisUrl = "redis://127.0.0.1:6379";

export interface PeerConfig {
  /** A libpq/node-postgres connection string (env STOCKD_BENCH_PG). */
  pgUrl: string;
  /** An ioredis URL (env STOCKD_BENCH_REDIS). */
  redisUrl: string;
  /** The pgbench binary (env STOCKD_BENCH_PGBENCH, else `pgbench` on PATH). */
  pgbenchPath: string;
}

export function peerConfig(env: NodeJS.ProcessEnv = process.env): PeerConfig {
  return {
    pgUrl: env.STOCKD_BENCH_PG ?? defaultPgUrl,
    redisUrl: env.STOCKD_BENCH_REDIS ?? defaultRedisUrl,
    pgbenchPath: env.STOCKD_BENCH_PGBENCH ?? "pgbench",
  };
}

/** A connection string without its password, for messages and notes. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ":***@");
  }
}

// ---- bounds ----------------------------------------------------------------------

/** How long a first connection may take before the peer counts as not
 * reachable (Skipped). */
export const connectTimeoutMs = 2_000;
/** How long one call (a query, a script) may go unanswered before it
 * counts as an error: a server that stops answering ends the run instead
 * of hanging it. */
export const commandTimeoutMs = 30_000;
/** How long a run waits for another one (another process) to finish with
 * the benchmark's tables or keys: two at once would trample each other's
 * stock. */
export const lockWaitMsMax = 300_000;
/** How often a waiting run tries the lock again. */
export const lockPollMs = 200;
/** Connections a Node driver opens to PostgreSQL at most, whatever
 * `clients` asks; PostgreSQL's max_connections caps it further. */
export const pgPoolSizeMax = 256;
/** Server connections left free for everyone else (psql, monitoring, the
 * admin and sweeper connections of this benchmark are counted apart). */
export const pgConnectionsSpare = 4;
/** Connections to Redis at most; more clients than this share them. */
export const redisConnectionsMax = 1_000;
/** A contention run stops after this long even if stock is left. */
export const raceTimeoutMs = 60_000;
/** Attempts one contention client makes at most: every unit, plus the one
 * refusal that tells it the stock is gone. */
export const raceAttemptsPerClientMax = contentionUnits + 1;
/** Pause after an error before a client tries again, so a server that went
 * away is not hammered in a tight loop. */
export const errorBackoffMs = 10;
/** Error messages kept per run, for the notes. */
export const errorSampleCountMax = 3;
/** How long a checkout holds its stock before the sweeper may release it
 * (stockd's gateway benchmarks run with --hold-duration 2s). */
export const checkoutHoldMs = 2_000;
/** How often the sweeper looks for expired holds. */
export const sweepIntervalMs = 100;
/** Orders one sweeper transaction (or Lua call) expires at most. */
export const sweepBatchMax = 1_000;
/** Batch size when seeding or scanning (Redis pipelines, SQL arrays). */
export const seedBatchSize = 1_000;

// ---- positions -------------------------------------------------------------------

/** Products and warehouses are numbered from 1 (pgbench's random(1, n)).
 * Every workload stocks all 100 x 100 positions; hot and contention use the
 * first one. */
export const hotProductId = 1;
export const hotWarehouseId = 1;
export const positionCount = uniformProductCount * uniformWarehouseCount;
/** Units on every position (enough that no uniform or checkout reservation
 * is refused within a run). */
export const positionStock = 1_000_000_000;
/** Units on the hot position: never runs out. */
export const hotStock = 1_000_000_000_000;

export interface Position {
  productId: number;
  warehouseId: number;
}

/** Position i in [0, positionCount): products vary slowest. */
export function positionAt(i: number): Position {
  return {
    productId: Math.floor(i / uniformWarehouseCount) + 1,
    warehouseId: (i % uniformWarehouseCount) + 1,
  };
}

/** Units received on a position before the run, by scenario. */
export function initialStock(scenario: ScenarioName, p: Position): number {
  const hot = p.productId === hotProductId && p.warehouseId === hotWarehouseId;
  if (!hot) return positionStock;
  if (scenario === "hot") return hotStock;
  if (scenario === "contention") return contentionUnits;
  return positionStock;
}

/** Units received over all positions. */
export function totalStock(scenario: ScenarioName): number {
  return (positionCount - 1) * positionStock + initialStock(scenario, positionAt(0));
}

/** A small seeded generator (xorshift32): each client its own sequence. */
export function xorshift32(seed: number): () => number {
  let x = seed | 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

export function randomPosition(random: () => number): Position {
  return positionAt(Math.floor(random() * positionCount));
}

/** `checkoutLineCount` distinct positions, sorted by (product, warehouse):
 * every transaction then locks rows in the same order, so two checkouts
 * never wait on each other in a cycle (no deadlocks). Floyd's sampling:
 * uniform over the subsets, no retries. */
export function checkoutPositions(random: () => number): Position[] {
  const chosen = new Set<number>();
  for (let j = positionCount - checkoutLineCount; j < positionCount; j++) {
    const t = Math.floor(random() * (j + 1));
    chosen.add(chosen.has(t) ? j : t);
  }
  return [...chosen].sort((a, b) => a - b).map(positionAt);
}

// ---- the closed loop -------------------------------------------------------------------

export type Outcome = "ok" | "refused" | "error";

/** Where a run is: answers count only while `measuring`. */
export interface Phase {
  measuring: boolean;
  stopping: boolean;
}

/** Answers of one kind of operation (reservations, checkouts, payments). */
export class Tally {
  /** In the measured window. */
  ok = 0;
  refused = 0;
  errors = 0;
  readonly latency = new LatencyHistogram();
  /** Over the whole run, warm-up and drain included: what the server must
   * hold afterwards. */
  okAll = 0;
  refusedAll = 0;
  errorsAll = 0;
  readonly errorSamples: string[] = [];

  add(outcome: Outcome, latencyNs: number, measuring: boolean): void {
    if (outcome === "ok") this.okAll++;
    else if (outcome === "refused") this.refusedAll++;
    else this.errorsAll++;
    if (!measuring) return;
    if (outcome === "ok") this.ok++;
    else if (outcome === "refused") this.refused++;
    else this.errors++;
    // Latency of answers; an error has none worth reporting.
    if (outcome !== "error") this.latency.record(latencyNs);
  }

  sampleError(err: unknown): void {
    if (this.errorSamples.length >= errorSampleCountMax) return;
    this.errorSamples.push(err instanceof Error ? err.message : String(err));
  }
}

/** Runs `fn`, counts its answer in `tally` with its latency; a throw is
 * an error (kept as a sample), never a success. */
export async function timed(
  tally: Tally,
  phase: Phase,
  fn: () => Promise<Outcome>,
): Promise<Outcome> {
  const t0 = process.hrtime.bigint();
  let outcome: Outcome;
  try {
    outcome = await fn();
  } catch (err) {
    tally.sampleError(err);
    outcome = "error";
  }
  tally.add(outcome, Number(process.hrtime.bigint() - t0), phase.measuring);
  if (outcome === "error") await sleep(errorBackoffMs);
  return outcome;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface LoopOptions {
  clients: number;
  warmupMs: number;
  durationMs: number;
  /** Told when the measured window starts and ends (CPU meters); the
   * window opens once the start is handled. */
  onMeasure?: (mark: "start" | "stop") => void | Promise<void>;
}

/** `clients` loops of `step`, each awaiting its own; a warm-up, then the
 * measured window; returns the window's length. Steps in flight when it
 * closes finish (and are awaited) but count no longer. */
export async function closedLoop(
  o: LoopOptions,
  step: (client: number, phase: Phase) => Promise<void>,
): Promise<{ elapsedMs: number; cpu: WindowCpu }> {
  const phase: Phase = { measuring: false, stopping: false };
  const loop = async (client: number) => {
    while (!phase.stopping) await step(client, phase);
  };
  const loops = Array.from({ length: o.clients }, (_, c) => loop(c));
  await sleep(o.warmupMs);
  await o.onMeasure?.("start");
  phase.measuring = true;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const busy0 = machineBusyUs();
  await sleep(o.durationMs);
  phase.measuring = false;
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const busy1 = machineBusyUs();
  await o.onMeasure?.("stop");
  phase.stopping = true;
  await Promise.all(loops);
  return {
    elapsedMs,
    cpu: {
      loadgenCores: (cpu.user + cpu.system) / 1000 / elapsedMs,
      machineCores: busy0 === null || busy1 === null ? null : (busy1 - busy0) / 1000 / elapsedMs,
    },
  };
}

/** CPU over a measured window, in cores. */
export interface WindowCpu {
  /** This process: the load generator. */
  loadgenCores: number;
  /** Everything on the machine (server, load generator, anything else);
   * null without /proc. */
  machineCores: number | null;
}

/** A Node load generator is one thread: near a whole core, it (not the
 * server) may be the limit. */
const loadgenCoresSaturated = 0.85;
/** Other work on the machine above this many cores makes a figure suspect. */
const otherCoresNoticeable = 0.25;

/** Where the CPU went in the measured window, and a warning when the
 * load generator or other work on the machine may have set the figure. */
export function cpuNote(cpu: WindowCpu, serverCpuUs: number | null, elapsedMs: number): string {
  const cores = (x: number) => round(x, 2);
  const serverCores = serverCpuUs === null ? null : serverCpuUs / 1000 / elapsedMs;
  const parts = [`load generator (this Node process) ${cores(cpu.loadgenCores)}`];
  if (serverCores !== null) parts.push(`server ${cores(serverCores)}`);
  let other: number | null = null;
  if (cpu.machineCores !== null) {
    if (serverCores !== null) {
      other = Math.max(0, cpu.machineCores - cpu.loadgenCores - serverCores);
      parts.push(`other work ${cores(other)}`);
    }
    parts.push(`machine ${cores(cpu.machineCores)} of ${availableParallelism()}`);
  }
  const warnings: string[] = [];
  if (cpu.loadgenCores >= loadgenCoresSaturated) {
    warnings.push("the load generator, not the server, may be the limit");
  }
  if (other !== null && other >= otherCoresNoticeable) {
    warnings.push("other work on the machine lowers the figure");
  }
  return `CPU in the window, cores: ${parts.join(", ")}${warnings.length > 0 ? ` (${warnings.join("; ")})` : ""}`;
}

/** The contention race: `clients` clients each reserve until refused (or
 * until an error, or `raceAttemptsPerClientMax`, or `raceTimeoutMs`). All
 * of it is measured: there is no warm-up, the stock runs out. */
export async function race(
  clients: number,
  tally: Tally,
  reserve: (client: number) => Promise<Outcome>,
): Promise<{ elapsedMs: number; timedOut: boolean }> {
  const phase: Phase = { measuring: true, stopping: false };
  const deadline = performance.now() + raceTimeoutMs;
  let timedOut = false;
  const loop = async (client: number) => {
    for (let attempt = 0; attempt < raceAttemptsPerClientMax; attempt++) {
      if (performance.now() > deadline) {
        timedOut = true;
        return;
      }
      const outcome = await timed(tally, phase, () => reserve(client));
      if (outcome !== "ok") return;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, (_, c) => loop(c)));
  return { elapsedMs: performance.now() - t0, timedOut };
}

// ---- notes ------------------------------------------------------------------------

export function errorNotes(what: string, tally: Tally): string[] {
  return tally.errorSamples.map((m) => `${what} error: ${m.slice(0, 200)}`);
}

export function latencyText(h: LatencyHistogram): string {
  const s = h.summaryMs();
  return `p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms, p999 ${s.p999Ms} ms (${s.count} answers)`;
}

// ---- results ----------------------------------------------------------------------

/** The peers run closed loops only. */
export function refuseOpenLoop(spec: RunSpec): void {
  if (spec.ratePerS !== undefined) {
    throw new Skipped("open-loop runs (ratePerS) are not implemented for the peer systems");
  }
}

export interface ResultParts {
  tally: Tally;
  elapsedMs: number;
  consistent: boolean | null;
  notes: string[];
  /** The server's CPU over the window, where it could be read. */
  serverCpuUs?: number | null;
  /** When the latency reported is not the tally's own (pgbench's logs). */
  latency?: LatencyHistogram;
}

export function runResult(
  d: Pick<Driver, "system" | "client" | "tool">,
  spec: RunSpec,
  p: ResultParts,
): RunResult {
  const h = p.latency ?? p.tally.latency;
  const s = h.summaryMs();
  const result: RunResult = {
    system: d.system,
    client: d.client,
    tool: d.tool,
    scenario: spec.scenario,
    clients: spec.clients,
    seconds: round(p.elapsedMs / 1000, 2),
    ok: p.tally.ok,
    refused: p.tally.refused,
    errors: p.tally.errors,
    okPerS: ratePerS(p.tally.ok, p.elapsedMs),
    consistent: p.consistent,
    notes: p.notes,
  };
  if (h.count > 0) result.latencyMs = { p50: s.p50Ms, p99: s.p99Ms, p999: s.p999Ms };
  if (p.serverCpuUs !== undefined && p.serverCpuUs !== null && p.tally.ok > 0) {
    result.serverCpuUsPerOk = round(p.serverCpuUs / p.tally.ok, 1);
  }
  return result;
}

/** Takes a lock shared with other processes, trying `tryLock` every
 * `lockPollMs` for up to `lockWaitMsMax`; returns how long it waited. */
export async function waitForLock(what: string, tryLock: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now();
  while (!(await tryLock())) {
    if (performance.now() - t0 > lockWaitMsMax) {
      throw new Error(`${what} still in use by another run after ${lockWaitMsMax / 1000} s`);
    }
    await sleep(lockPollMs);
  }
  return performance.now() - t0;
}

export function lockNote(what: string, waitedMs: number): string[] {
  return waitedMs < 1_000
    ? []
    : [`waited ${round(waitedMs / 1000, 1)} s for another run to finish with ${what}`];
}
