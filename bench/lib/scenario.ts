// The comparison suite's shared vocabulary (`npm run bench`): the four
// workloads, what one measured run is asked to do, and what it reports. Every
// system (stockd over each transport, the bare echo servers, PostgreSQL,
// Redis) is driven through a `Driver`, so the suite runs them side by side
// on the same workload and prints every ratio.

/** The workloads of the comparison:
 * - hot: every client reserves 1 unit of one product in one warehouse;
 * - uniform: 10,000 SKU positions (100 products x 100 warehouses), a random
 *   one per reservation, 1 unit;
 * - checkout: reserve 3 random lines atomically and create a pending order;
 *   half are then paid, half left to expire;
 * - contention: `clients` clients race for 100 units of one position, one
 *   unit each, until none are left; exactly 100 must succeed. */
export type ScenarioName = "hot" | "uniform" | "checkout" | "contention";

export const scenarioNames: readonly ScenarioName[] = ["hot", "uniform", "checkout", "contention"];

/** Units the contention workload races for. */
export const contentionUnits = 100;
/** Clients racing in the contention workload. */
export const contentionClients = 1000;
/** Positions of the uniform workload. */
export const uniformProductCount = 100;
export const uniformWarehouseCount = 100;
/** Lines per checkout. */
export const checkoutLineCount = 3;

export interface RunSpec {
  scenario: ScenarioName;
  /** Concurrent clients (connections, or calls in flight). */
  clients: number;
  warmupMs: number;
  durationMs: number;
  /** Open-loop: a fixed arrival rate (per second) instead of closed-loop
   * clients; absent means as fast as the clients go. */
  ratePerS?: number;
}

export interface LatencyMs {
  p50: number;
  p99: number;
  p999: number;
}

export interface RunResult {
  /** What was measured, e.g. "stockd gRPC", "stockd gRPC batch",
   * "stockd HTTP", "echo gRPC", "postgres sync=on", "redis". */
  system: string;
  /** Which load generator: a Node client or a C client (h2load, wrk,
   * pgbench). */
  client: "node" | "c";
  /** The tool, e.g. "grpc-js", "autocannon", "h2load", "wrk", "pg",
   * "pgbench", "ioredis". */
  tool: string;
  scenario: ScenarioName;
  clients: number;
  ratePerS?: number;
  seconds: number;
  /** Successes, counted from the answers (gRPC status, HTTP status with
   * the body's meaning, SQL row count, Lua result) or the server's own
   * counters; never from transport-level success alone. For the batch API:
   * reservations, not calls. */
  ok: number;
  /** Expected refusals (out of stock). */
  refused: number;
  /** Anything else: errors, timeouts, unexpected answers. */
  errors: number;
  okPerS: number;
  latencyMs?: LatencyMs;
  /** Server-side CPU per success, in microseconds, where measurable. */
  serverCpuUsPerOk?: number;
  /** The no-oversell check after the run: true when it held (for
   * contention: exactly `contentionUnits` succeeded; otherwise available +
   * held/sold equals what was received), false when it failed, null when
   * not checked. */
  consistent: boolean | null;
  notes?: string[];
}

export interface Driver {
  /** e.g. "postgres sync=on"; a driver may be asked for several scenarios. */
  system: string;
  client: "node" | "c";
  tool: string;
  /** Sets up (schema, stock) for the scenario and measures it. */
  run(spec: RunSpec): Promise<RunResult>;
  close(): Promise<void>;
}

/** Why a peer is not measured (not reachable, tool not installed): the
 * suite prints it and goes on. */
export class Skipped extends Error {
  override name = "Skipped";
}

/** What the suite tells every driver factory. */
export interface SuiteContext {
  quick: boolean;
  durability: "fsync" | "relaxed";
  /** stockd worker threads (undefined: the server's default). */
  workerCount?: number;
}

/** Makes the drivers of one family (stockd's transports and clients in
 * bench/drivers/index.ts, the peers in bench/peers/index.ts). A driver that
 * cannot run here is left out with its reason in `skipped`. */
export type DriverFactory = (
  ctx: SuiteContext,
) => Promise<{ drivers: Driver[]; skipped: { system: string; reason: string }[] }>;
