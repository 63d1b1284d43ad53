// What one run of the comparison suite (`npm run bench`) writes to
// bench/results/suite-<timestamp>.json, and what bench/report.ts reads back:
// the machine, the settings, every measured run, every driver left out with
// its reason, and the sections beyond the comparison (scaling, latency at
// fixed rates, memory).

import type { MemoryRun } from "../memory.ts";
import type { RunResult, ScenarioName } from "./scenario.ts";
import type { Machine } from "./server_child.ts";

export const suiteResultsKind = "stockd-bench-suite";
export const suiteResultsVersion = 1;

export const sectionNames = ["compare", "scaling", "latency", "memory"] as const;
export type SectionName = (typeof sectionNames)[number];

/** Open-loop arrival rates, as fractions of the measured maximum. */
export const rateFractions = [0.25, 0.5, 0.75] as const;

export interface SuiteSettings {
  quick: boolean;
  /** Fake drivers only: the report pipeline's own test, never figures. */
  selfTest: boolean;
  scenarios: ScenarioName[];
  /** Substrings a driver's "system client tool" must contain (any of them);
   * empty: every driver. */
  systemFilters: string[];
  clients: number[];
  warmupMs: number;
  durationMs: number;
  contentionClients: number;
  sections: SectionName[];
  durability: "fsync" | "relaxed";
  /** The stockd system measured with 1..cores workers. */
  scalingSystem: string;
  workerCounts: number[];
  /** The stockd systems measured at fixed arrival rates. */
  latencySystems: string[];
  memoryItemCount: number;
}

/** A driver, or one of its runs, that was not measured. */
export interface LeftOut {
  section: SectionName;
  system: string;
  client?: "node" | "c";
  tool?: string;
  scenario?: ScenarioName;
  clients?: number;
  reason: string;
}

export interface ScalingRow {
  workerCount: number;
  result: RunResult;
}

export interface ScalingSection {
  system: string;
  scenario: ScenarioName;
  clients: number;
  rows: ScalingRow[];
}

export interface LatencyRow {
  system: string;
  client: "node" | "c";
  tool: string;
  /** The closed-loop throughput the fixed rates are fractions of. */
  maxOkPerS: number;
  /** Where the maximum came from: the comparison's best uniform run, or a
   * closed-loop run of this section. */
  maxFrom: string;
  /** null: the closed-loop (saturated) run itself. */
  fraction: number | null;
  /** The saturated row repeats a run of the comparison (not a run of its
   * own: not counted twice). */
  repeatsCompare: boolean;
  result: RunResult;
}

export interface LatencySection {
  scenario: ScenarioName;
  clients: number;
  rows: LatencyRow[];
}

export interface MemorySection {
  itemCount: number;
  run: MemoryRun | null;
  error?: string;
  seconds: number;
}

export interface SuiteResults {
  kind: typeof suiteResultsKind;
  version: typeof suiteResultsVersion;
  machine: Machine;
  settings: SuiteSettings;
  startedAt: string;
  elapsedS: number;
  loadAverageAtEnd: number;
  /** The comparison's runs (every scenario x system x clients measured). */
  runs: RunResult[];
  /** Drivers or runs not measured: Skipped by the driver (unsupported,
   * not reachable), with the reason. */
  skipped: LeftOut[];
  /** Runs that threw or timed out: a fault of the driver or the system. */
  failed: LeftOut[];
  sections: {
    scaling?: ScalingSection;
    latency?: LatencySection;
    memory?: MemorySection;
  };
}

/** The figure runs are compared by: successes/s; for contention, answers
 * (successes and refusals) per second while the race lasted, counted the
 * same way for every system (the drivers' own okPerS differs there: some
 * count answers, some successes, of which there are always 100). */
export function throughputOf(r: RunResult): number {
  if (r.scenario !== "contention") return r.okPerS;
  return r.seconds > 0 ? Math.round((r.ok + r.refused) / r.seconds) : 0;
}

/** The identity of a driver: one system can be driven by several tools. */
export function driverKey(r: { system: string; client: string; tool: string }): string {
  return `${r.system} (${r.client === "c" ? "C" : "Node"}: ${r.tool})`;
}

export function isSuiteResults(x: unknown): x is SuiteResults {
  if (typeof x !== "object" || x === null) return false;
  const r = x as Partial<SuiteResults>;
  return r.kind === suiteResultsKind && Array.isArray(r.runs) && typeof r.machine === "object";
}

/** stockd first, then the bare transports, PostgreSQL, Redis; Node before C. */
function systemOrder(r: RunResult): number {
  const family = /^stockd\b/i.test(r.system)
    ? 0
    : /^echo\b/i.test(r.system)
      ? 1
      : /postgres/i.test(r.system)
        ? 2
        : /redis/i.test(r.system)
          ? 3
          : 4;
  return family * 10 + (r.client === "c" ? 1 : 0);
}

/** Runs in the order the report lists them. */
export function sortRuns(runs: RunResult[]): RunResult[] {
  return [...runs].sort(
    (a, b) =>
      systemOrder(a) - systemOrder(b) ||
      a.system.localeCompare(b.system) ||
      a.tool.localeCompare(b.tool) ||
      a.clients - b.clients,
  );
}
