// What every driver of bench/drivers shares: how many connections a number
// of clients gets, how a RunResult is put together, and the bounds of the
// open loop and the drain.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Driver,
  type LatencyMs,
  type RunResult,
  type RunSpec,
  type ScenarioName,
  Skipped,
} from "../lib/scenario.ts";
import { type CpuSpent, cpuFigures } from "../lib/server_child.ts";
import { type LatencyHistogram, type LatencySummary, round } from "../lib/stats.ts";

/** Calls in flight per HTTP/2 connection (grpc-js channel, h2load client):
 * 128 clients get 4 connections, as in bench/grpc.ts. */
export const streamsPerConnection = 32;
/** HTTP/2 connections at most, however many clients. */
export const connectionCountMax = 16;
/** Open loop: requests (or sessions) outstanding at most; a request due
 * beyond it is skipped and counted as an error. */
export const openLoopInFlightMax = 10_000;
/** How long a run waits for answers still outstanding after measuring. */
export const drainMsMax = 10_000;

/** A load generator thread near a whole core may be the limit, not the
 * server (as in server_child.ts). */
const loadgenCoresSaturated = 0.85;

/** HTTP/2 connections for `clients` calls in flight. */
export function connectionsFor(clients: number): number {
  return Math.min(connectionCountMax, Math.max(1, Math.ceil(clients / streamsPerConnection)));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Throws Skipped unless the scenario (and the open loop, when asked for)
 * is one the driver measures. */
export function requireScenario(
  d: Pick<Driver, "system" | "tool">,
  spec: RunSpec,
  supported: readonly ScenarioName[],
  openLoop: boolean,
  why: string,
): void {
  if (!supported.includes(spec.scenario)) {
    throw new Skipped(`${d.system} (${d.tool}): ${spec.scenario} is not measured: ${why}`);
  }
  if (spec.ratePerS !== undefined && !openLoop) {
    throw new Skipped(`${d.system} (${d.tool}): no open loop (fixed rate): ${why}`);
  }
  if (spec.ratePerS !== undefined && spec.scenario === "contention") {
    throw new Skipped(`${d.system} (${d.tool}): contention is a race, not a fixed rate`);
  }
}

export function latencyOf(s: LatencySummary): LatencyMs | undefined {
  return s.count === 0 ? undefined : { p50: s.p50Ms, p99: s.p99Ms, p999: s.p999Ms };
}

export function latencyOfHistogram(h: LatencyHistogram): LatencyMs | undefined {
  return latencyOf(h.summaryMs());
}

export interface Measured {
  elapsedMs: number;
  ok: number;
  refused: number;
  errors: number;
  latency: LatencyMs | undefined;
  /** The server's CPU over the window; null where not measured. */
  serverUs: number | null;
  consistent: boolean | null;
  notes: string[];
}

/** A RunResult for `d` on `spec` from what was measured. */
export function resultOf(
  d: Pick<Driver, "system" | "client" | "tool">,
  spec: RunSpec,
  m: Measured,
): RunResult {
  const seconds = m.elapsedMs / 1000;
  const r: RunResult = {
    system: d.system,
    client: d.client,
    tool: d.tool,
    scenario: spec.scenario,
    clients: spec.clients,
    seconds: round(seconds, 3),
    ok: m.ok,
    refused: m.refused,
    errors: m.errors,
    okPerS: seconds > 0 ? round(m.ok / seconds) : 0,
    consistent: m.consistent,
  };
  if (spec.ratePerS !== undefined) r.ratePerS = spec.ratePerS;
  if (m.latency !== undefined) r.latencyMs = m.latency;
  if (m.serverUs !== null && m.ok > 0) r.serverCpuUsPerOk = round(m.serverUs / m.ok, 1);
  if (m.notes.length > 0) r.notes = m.notes;
  return r;
}

/** "a 3, b 1" from counts, largest first. */
export function countsText(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
}

export function pick<T>(items: readonly T[]): T {
  if (items.length === 0) throw new Error("pick from an empty list");
  return items[Math.floor(Math.random() * items.length)]!;
}

/** `count` distinct items at random (all of them when there are fewer). */
export function pickDistinct<T>(items: readonly T[], count: number): T[] {
  const chosen = new Set<number>();
  const n = Math.min(count, items.length);
  while (chosen.size < n) chosen.add(Math.floor(Math.random() * items.length));
  return [...chosen].map((i) => items[i]!);
}

let scratch: string | null = null;

/** A temporary directory for this process's generated files (request
 * bodies, logs), removed when the process exits. */
export function scratchDir(): string {
  if (scratch === null) {
    const dir = mkdtempSync(join(tmpdir(), "stockd-drivers-"));
    scratch = dir;
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return scratch;
}

/** The first line a program prints for `args` (e.g. --version; wrk exits
 * 1 on it), or null when it cannot be run. */
export function toolVersion(program: string, args: string[]): string | null {
  const r = spawnSync(program, args, { encoding: "utf8", timeout: 10_000 });
  if (r.error !== undefined) return null;
  const line = `${r.stdout ?? ""}${r.stderr ?? ""}`.split("\n")[0]?.trim() ?? "";
  return line === "" ? null : line;
}

/** Where the CPU went over a run's measured window, for its notes.
 * `loadgen`: "node" when this process generates the load, else the name of
 * the C tool (a process of its own, counted in "other work"). */
export function cpuText(spent: CpuSpent, elapsedMs: number, loadgen: string): string[] {
  const c = cpuFigures(spent, 0, elapsedMs);
  const node = loadgen === "node";
  const notes = [
    `CPU in the window, cores: server ${c.serverCores ?? "?"}, ` +
      `${node ? "load generator (this process)" : "this process"} ${c.loadgenCores}, ` +
      `other work${node ? "" : ` (${loadgen} included)`} ${c.otherCores ?? "?"}; ` +
      `${availableParallelism()} cores`,
  ];
  if (node && c.loadgenCores >= loadgenCoresSaturated) {
    notes.push(
      "the Node load generator was near a whole core: it, not the server, may be the limit",
    );
  }
  return notes;
}
