// The comparison suite: stockd (gRPC unary, the batch API, HTTP; Node and C
// clients), each transport's bare echo server, PostgreSQL and Redis, on the
// same workloads with the same concurrent clients; then scaling with worker
// threads, latency at fixed arrival rates and memory. Writes
// bench/results/suite-<stamp>.json and a markdown report with SVG charts
// (bench/results/latest.md). Figures are measured and compared with
// targets, never asserted.
//
//   npm run bench [-- --quick] [-- --only hot,uniform,checkout,contention]
//     [-- --systems substring,...] [-- --clients 8,32,128] [-- --duration S]
//     [-- --warmup S] [-- --sections compare,scaling,latency,memory]
//     [-- --durability fsync|relaxed] [-- --self-test]

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { stockdDrivers } from "./drivers/index.ts";
import {
  contentionClients,
  type Driver,
  type DriverFactory,
  type RunResult,
  type RunSpec,
  type ScenarioName,
  Skipped,
  type SuiteContext,
  scenarioNames,
} from "./lib/scenario.ts";
import { machine, machineLine, writeResults } from "./lib/server_child.ts";
import { grouped, round } from "./lib/stats.ts";
import { shownPath, writeReport } from "./lib/suite_output.ts";
import { targetRows } from "./lib/suite_report.ts";
import {
  driverKey,
  type LatencyRow,
  type LatencySection,
  type LeftOut,
  type MemorySection,
  rateFractions,
  type ScalingSection,
  type SectionName,
  type SuiteResults,
  type SuiteSettings,
  sectionNames,
  suiteResultsKind,
  suiteResultsVersion,
} from "./lib/suite_results.ts";
import type { MemoryRun } from "./memory.ts";
import { peerDrivers } from "./peers/index.ts";

const usage = `usage: npm run bench [-- options]
  --quick                 a short run (under two minutes): clients 32, fewer systems
  --only LIST             scenarios: ${scenarioNames.join(",")}
  --systems LIST          only drivers whose "system client tool" contains one of these
  --clients LIST          concurrent clients [8,32,128; quick: 32]
  --duration S            measured seconds per run [10; quick: 2]
  --warmup S              warm-up seconds per run [3; quick: 0.5]
  --sections LIST         ${sectionNames.join(",")} [all]
  --durability MODE       stockd's journal: fsync (durable) or relaxed [fsync]
  --self-test             fake drivers, to test the report pipeline (no figures)`;

/** A run may take this much longer than its warm-up and measurement (setup,
 * stock, the check after it) before the suite gives up on its driver. */
const runSlackMs = 60_000;
/** The quick run gives up sooner: its whole budget is two minutes. */
const runSlackQuickMs = 30_000;
/** The memory child: 1,000,000 positions and holds take ~10 s. */
const memoryTimeoutMs = 300_000;
/** Guesses for the time plan, from runs on a 2-core machine: what a run
 * costs beyond warm-up and measurement; a contention run; starting stockd
 * for a scaling step; the memory child. */
const runOverheadMs = 1_000;
const contentionRunMs = 2_000;
const serverStartMs = 4_000;
const memorySectionMs = 8_000;

// ---- settings ------------------------------------------------------------------------

function list(value: string | undefined): string[] {
  return value === undefined
    ? []
    : value
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
}

function fail(message: string): never {
  console.error(`${message}\n${usage}`);
  process.exit(2);
}

/** 1, 2, ... up to the core count; beyond 8 cores, powers of two and the count. */
function workerCountsFor(cores: number): number[] {
  const counts: number[] = [];
  for (let w = 1; w <= cores; w = cores <= 8 ? w + 1 : w * 2) counts.push(w);
  if (counts.at(-1) !== cores) counts.push(cores);
  return counts;
}

function parseOptions(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      "self-test": { type: "boolean", default: false },
      only: { type: "string" },
      systems: { type: "string" },
      clients: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      sections: { type: "string" },
      durability: { type: "string", default: "fsync" },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
}

function parseSettings(argv: string[]): SuiteSettings {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv);
  } catch (err) {
    fail((err as Error).message);
  }
  const { values } = parsed;
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const quick = values.quick;
  const scenarios = list(values.only);
  for (const s of scenarios) {
    if (!(scenarioNames as readonly string[]).includes(s)) fail(`unknown scenario "${s}"`);
  }
  const sections = list(values.sections);
  for (const s of sections) {
    if (!(sectionNames as readonly string[]).includes(s)) fail(`unknown section "${s}"`);
  }
  const clients = list(values.clients).map(Number);
  if (clients.some((c) => !Number.isInteger(c) || c < 1)) fail("--clients takes whole numbers");
  const seconds = (v: string | undefined, dflt: number) => {
    const s = v === undefined ? dflt : Number(v);
    if (!Number.isFinite(s) || s < 0) fail(`not a number of seconds: ${v}`);
    return Math.round(s * 1000);
  };
  if (values.durability !== "fsync" && values.durability !== "relaxed") {
    fail("--durability takes fsync or relaxed");
  }
  const durationMs = seconds(values.duration, quick ? 2 : 10);
  if (durationMs <= 0) fail("--duration must be above 0");
  return {
    quick,
    selfTest: values["self-test"],
    scenarios: scenarios.length > 0 ? (scenarios as ScenarioName[]) : [...scenarioNames],
    systemFilters: list(values.systems),
    clients: clients.length > 0 ? clients : quick ? [32] : [8, 32, 128],
    warmupMs: seconds(values.warmup, quick ? 0.5 : 3),
    durationMs,
    contentionClients,
    sections: sections.length > 0 ? (sections as SectionName[]) : [...sectionNames],
    durability: values.durability,
    scalingSystem: "stockd gRPC batch",
    workerCounts: workerCountsFor(availableParallelism()),
    latencySystems: ["stockd gRPC", "stockd HTTP"],
    memoryItemCount: 1_000_000,
  };
}

// ---- which drivers -----------------------------------------------------------------------

const sameName = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

function matchesFilters(d: Driver, filters: string[]): boolean {
  if (filters.length === 0) return true;
  const text = `${d.system} ${d.client} ${d.tool}`.toLowerCase();
  return filters.some((f) => text.includes(f.toLowerCase()));
}

/** The quick run's share of each driver: the scenarios it runs, none for
 * a driver left out. Kept: one Node client for each of stockd gRPC, batch
 * and HTTP; stockd's C clients; PostgreSQL sync=on (node-postgres and
 * pgbench) and Redis. The bare echoes run with C clients only and on the
 * hot SKU only: an echo does the same work whatever the scenario, and the
 * report divides the uniform runs by it too. Checkout and contention run
 * on stockd gRPC (Node) and on the peers. */
function quickScenarios(d: Driver, seen: Set<string>): ScenarioName[] {
  const all: ScenarioName[] = ["hot", "uniform", "checkout", "contention"];
  const pairs: [RegExp, "node" | "c", ScenarioName[]][] = [
    [/^stockd gRPC$/i, "node", all],
    [/^stockd gRPC batch$/i, "node", ["hot", "uniform"]],
    [/^stockd HTTP$/i, "node", ["hot", "uniform"]],
    [/^stockd (gRPC|HTTP)$/i, "c", ["hot", "uniform"]],
    [/^echo (gRPC|HTTP)$/i, "c", ["hot"]],
    // pgbench's system is "postgres sync=on (pgbench)".
    [/^postgres sync=on\b/i, "node", all],
    [/^postgres sync=on\b/i, "c", all],
    [/^redis\b/i, "node", all],
  ];
  const i = pairs.findIndex(([re, client]) => re.test(d.system) && client === d.client);
  // One driver per kept system and client kind.
  const key = `${d.system.toLowerCase()} ${d.client}`;
  if (i < 0 || seen.has(key)) return [];
  seen.add(key);
  return pairs[i]![2];
}

// ---- one run ------------------------------------------------------------------------------

class RunTimeout extends Error {
  override name = "RunTimeout";
}

async function runBounded(d: Driver, spec: RunSpec, slackMs: number): Promise<RunResult> {
  const limitMs = spec.warmupMs + spec.durationMs + slackMs;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new RunTimeout(`no result after ${round(limitMs / 1000, 1)} s`)),
      limitMs,
    );
  });
  try {
    return await Promise.race([d.run(spec), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Progress {
  /** How much longer than warm-up and measurement a run may take. */
  slackMs: number;
  done: number;
  planned: number;
  startedMs: number;
}

function runLine(r: RunResult): string {
  const l = r.latencyMs;
  const lat = l === undefined ? "" : `  p50/p99/p999 ${l.p50}/${l.p99}/${l.p999} ms`;
  const cpu = r.serverCpuUsPerOk === undefined ? "" : `  ${r.serverCpuUsPerOk} µs/ok`;
  const check = r.consistent === null ? "unchecked" : r.consistent ? "consistent" : "INCONSISTENT";
  const extra = r.errors > 0 ? `  errors ${grouped(r.errors)}` : "";
  return `${grouped(r.okPerS)} ok/s (${grouped(r.ok)} ok, ${grouped(r.refused)} refused)${lat}${cpu}  ${check}${extra}`;
}

function label(d: Driver, spec: RunSpec): string {
  const rate = spec.ratePerS === undefined ? "" : ` @${grouped(spec.ratePerS)}/s`;
  return `${spec.scenario.padEnd(10)} ${driverKey(d)}, ${spec.clients} clients${rate}`;
}

/** Runs one spec; a Skipped or a failure is recorded, not thrown. A driver
 * that timed out is not asked again (it may still be busy). */
async function measure(
  d: Driver,
  spec: RunSpec,
  section: SectionName,
  out: { skipped: LeftOut[]; failed: LeftOut[]; broken: Set<Driver> },
  progress: Progress,
): Promise<RunResult | null> {
  progress.done++;
  const elapsed = Math.round((performance.now() - progress.startedMs) / 1000);
  const head = `[${String(progress.done).padStart(3)}/${progress.planned} ${String(elapsed).padStart(4)} s] ${label(d, spec)}`;
  const who = { section, system: d.system, client: d.client, tool: d.tool };
  const where = { scenario: spec.scenario, clients: spec.clients };
  if (out.broken.has(d)) {
    out.failed.push({ ...who, ...where, reason: "not run: the driver timed out earlier" });
    console.log(`${head}: not run (the driver timed out earlier)`);
    return null;
  }
  try {
    const r = await runBounded(d, spec, progress.slackMs);
    console.log(`${head}: ${runLine(r)}`);
    return r;
  } catch (err) {
    const e = err as Error;
    if (err instanceof Skipped) {
      out.skipped.push({ ...who, ...where, reason: e.message });
      console.log(`${head}: skipped (${e.message})`);
    } else {
      if (err instanceof RunTimeout) out.broken.add(d);
      out.failed.push({ ...who, ...where, reason: `${e.name}: ${e.message}` });
      console.log(`${head}: FAILED ${e.name}: ${e.message}`);
    }
    return null;
  }
}

async function closeQuietly(d: Driver, failed: LeftOut[], section: SectionName): Promise<void> {
  try {
    await Promise.race([
      d.close(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error("close took over 30 s")), 30_000).unref(),
      ),
    ]);
  } catch (err) {
    failed.push({
      section,
      system: d.system,
      client: d.client,
      tool: d.tool,
      reason: `close: ${(err as Error).message}`,
    });
  }
}

// ---- the plan ------------------------------------------------------------------------------

interface Job {
  driver: Driver;
  spec: RunSpec;
}

interface Plan {
  /** Grouped by driver, in the order the drivers came. */
  compare: Job[];
  latency: Driver[];
  latencyFractions: readonly number[];
  runCount: number;
  estimateMs: number;
}

function compareJobs(s: SuiteSettings, drivers: Driver[]): Job[] {
  const jobs: Job[] = [];
  const seen = new Set<string>();
  for (const driver of drivers) {
    const scenarios = s.quick ? quickScenarios(driver, seen) : s.scenarios;
    for (const scenario of s.scenarios) {
      if (!scenarios.includes(scenario)) continue;
      if (scenario === "contention") {
        // The race ends when the units are gone; the duration is a bound.
        const spec = {
          scenario,
          clients: s.contentionClients,
          warmupMs: 0,
          durationMs: s.durationMs,
        };
        jobs.push({ driver, spec });
        continue;
      }
      for (const clients of s.clients) {
        jobs.push({
          driver,
          spec: { scenario, clients, warmupMs: s.warmupMs, durationMs: s.durationMs },
        });
      }
    }
  }
  return jobs;
}

/** stockd's runs alternate with the others': a stockd run waits until the
 * holds of the one before it have expired (2 s), and a peer's run in
 * between takes that time instead of an idle wait. Each driver's own runs
 * keep their order. */
function interleave(jobs: Job[]): Job[] {
  const stockd = jobs.filter((j) => isStockd(j.driver));
  const others = jobs.filter((j) => !isStockd(j.driver));
  const out: Job[] = [];
  for (let i = 0; i < Math.max(stockd.length, others.length); i++) {
    if (i < stockd.length) out.push(stockd[i]!);
    if (i < others.length) out.push(others[i]!);
  }
  return out;
}

function plan(s: SuiteSettings, drivers: Driver[]): Plan {
  const candidates = drivers.filter((d) => matchesFilters(d, s.systemFilters));
  const compare = s.sections.includes("compare") ? interleave(compareJobs(s, candidates)) : [];
  const latency = s.sections.includes("latency")
    ? s.latencySystems
        .map((name) => candidates.find((d) => d.client === "node" && sameName(d.system, name)))
        .filter((d): d is Driver => d !== undefined)
    : [];
  // The quick run measures the fixed rate the target is set at only.
  const latencyFractions = s.quick ? [0.5] : rateFractions;
  const runMs = s.warmupMs + s.durationMs + runOverheadMs;
  let runCount = compare.length;
  let estimateMs = compare.some((j) => isStockd(j.driver)) ? serverStartMs : 0;
  for (const j of compare) estimateMs += j.spec.scenario === "contention" ? contentionRunMs : runMs;
  for (const d of latency) {
    const hasMax = compare.some((j) => j.driver === d && j.spec.scenario === "uniform");
    runCount += latencyFractions.length + (hasMax ? 0 : 1);
    estimateMs += (latencyFractions.length + (hasMax ? 0 : 1)) * runMs;
  }
  const scaling = s.sections.includes("scaling") && matchesName(s.scalingSystem, s.systemFilters);
  if (scaling) {
    runCount += s.workerCounts.length;
    estimateMs += s.workerCounts.length * (runMs + serverStartMs);
  }
  if (s.sections.includes("memory")) estimateMs += memorySectionMs;
  return { compare, latency, latencyFractions, runCount, estimateMs };
}

const isStockd = (d: Driver) => /^stockd\b/i.test(d.system);

function matchesName(system: string, filters: string[]): boolean {
  return (
    filters.length === 0 || filters.some((f) => system.toLowerCase().includes(f.toLowerCase()))
  );
}

// ---- sections --------------------------------------------------------------------------------

interface Ledger {
  runs: RunResult[];
  skipped: LeftOut[];
  failed: LeftOut[];
  broken: Set<Driver>;
}

async function sectionCompare(p: Plan, ledger: Ledger, progress: Progress): Promise<void> {
  console.log("\n== compare: every scenario x system x clients");
  const lastJob = new Map<Driver, number>();
  for (const [i, job] of p.compare.entries()) lastJob.set(job.driver, i);
  for (const [i, job] of p.compare.entries()) {
    const r = await measure(job.driver, job.spec, "compare", ledger, progress);
    if (r !== null) ledger.runs.push(r);
    // A driver's server stops with its last driver: close each when done.
    if (lastJob.get(job.driver) === i && !p.latency.includes(job.driver)) {
      await closeQuietly(job.driver, ledger.failed, "compare");
    }
  }
}

async function sectionLatency(
  s: SuiteSettings,
  p: Plan,
  ledger: Ledger,
  progress: Progress,
): Promise<LatencySection> {
  const clients = Math.max(...s.clients);
  const section: LatencySection = { scenario: "uniform", clients, rows: [] };
  console.log(
    `\n== latency: open loop at ${p.latencyFractions.map((f) => `${f * 100}%`).join(", ")} of the maximum rate (uniform)`,
  );
  for (const d of p.latency) {
    let saturated = ledger.runs
      .filter(
        (r) =>
          r.scenario === "uniform" &&
          r.ratePerS === undefined &&
          r.system === d.system &&
          r.client === d.client &&
          r.tool === d.tool,
      )
      .sort((a, b) => b.okPerS - a.okPerS)[0];
    let maxFrom = "best closed-loop uniform run of the comparison";
    const repeatsCompare = saturated !== undefined;
    if (saturated === undefined) {
      const spec = {
        scenario: "uniform" as const,
        clients,
        warmupMs: s.warmupMs,
        durationMs: s.durationMs,
      };
      saturated = (await measure(d, spec, "latency", ledger, progress)) ?? undefined;
      maxFrom = `closed-loop run, ${clients} clients`;
    }
    const who = { system: d.system, client: d.client, tool: d.tool };
    if (saturated === undefined || saturated.okPerS <= 0) {
      ledger.skipped.push({
        section: "latency",
        ...who,
        reason: "no maximum rate: the closed-loop run gave none",
      });
      await closeQuietly(d, ledger.failed, "latency");
      continue;
    }
    const maxOkPerS = saturated.okPerS;
    section.rows.push({
      ...who,
      maxOkPerS,
      maxFrom,
      fraction: null,
      repeatsCompare,
      result: saturated,
    });
    for (const fraction of p.latencyFractions) {
      const spec: RunSpec = {
        scenario: "uniform",
        clients,
        warmupMs: s.warmupMs,
        durationMs: s.durationMs,
        ratePerS: Math.max(1, Math.round(maxOkPerS * fraction)),
      };
      const r = await measure(d, spec, "latency", ledger, progress);
      if (r !== null)
        section.rows.push({
          ...who,
          maxOkPerS,
          maxFrom,
          fraction,
          repeatsCompare: false,
          result: r,
        } satisfies LatencyRow);
    }
    await closeQuietly(d, ledger.failed, "latency");
  }
  return section;
}

async function sectionScaling(
  s: SuiteSettings,
  factory: DriverFactory,
  ledger: Ledger,
  progress: Progress,
): Promise<ScalingSection> {
  const clients = Math.max(...s.clients);
  const section: ScalingSection = {
    system: s.scalingSystem,
    scenario: "uniform",
    clients,
    rows: [],
  };
  console.log(
    `\n== scaling: ${s.scalingSystem}, uniform, ${clients} clients, workers ${s.workerCounts.join(", ")}`,
  );
  for (const workerCount of s.workerCounts) {
    const ctx: SuiteContext = { quick: s.quick, durability: s.durability, workerCount };
    const made = await factory(ctx);
    const d = made.drivers.find((x) => x.client === "node" && sameName(x.system, s.scalingSystem));
    for (const other of made.drivers)
      if (other !== d) await closeQuietly(other, ledger.failed, "scaling");
    if (d === undefined) {
      const why =
        made.skipped.find((x) => sameName(x.system, s.scalingSystem))?.reason ?? "no such driver";
      ledger.skipped.push({
        section: "scaling",
        system: s.scalingSystem,
        reason: `${workerCount} workers: ${why}`,
      });
      console.log(`scaling, ${workerCount} workers: skipped (${why})`);
      continue;
    }
    const spec = {
      scenario: "uniform" as const,
      clients,
      warmupMs: s.warmupMs,
      durationMs: s.durationMs,
    };
    const r = await measure(d, spec, "scaling", ledger, progress);
    if (r !== null) section.rows.push({ workerCount, result: r });
    await closeQuietly(d, ledger.failed, "scaling");
  }
  return section;
}

function runMemoryChild(count: number): Promise<MemoryRun> {
  const script = fileURLToPath(new URL("./memory.ts", import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--expose-gc", "--import", "tsx", script, String(count)],
      {
        cwd: dirname(dirname(script)),
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const timer = setTimeout(() => child.kill("SIGKILL"), memoryTimeoutMs);
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const line = out.split("\n").find((l) => l.startsWith("MEMORY "));
      if (code !== 0 || line === undefined) {
        reject(new Error(`bench/memory.ts exited with ${code ?? signal} and no MEMORY line`));
      } else resolve(JSON.parse(line.slice("MEMORY ".length)) as MemoryRun);
    });
  });
}

async function sectionMemory(s: SuiteSettings): Promise<MemorySection> {
  console.log(
    `\n== memory: ${grouped(s.memoryItemCount)} SKU positions and open holds (child process)`,
  );
  const t0 = performance.now();
  const seconds = () => round((performance.now() - t0) / 1000, 1);
  try {
    const run = await runMemoryChild(s.memoryItemCount);
    const mb = (b: number) => (b / 1e6).toFixed(0);
    console.log(
      `positions +${mb(run.positions.rssDeltaBytes)} MB resident (${run.positions.rssBytesPerItem} B each), ` +
        `open holds +${mb(run.holds.rssDeltaBytes)} MB (${run.holds.rssBytesPerItem} B each), ${seconds()} s`,
    );
    return { itemCount: s.memoryItemCount, run, seconds: seconds() };
  } catch (err) {
    console.log(`memory: FAILED ${(err as Error).message}`);
    return {
      itemCount: s.memoryItemCount,
      run: null,
      error: (err as Error).message,
      seconds: seconds(),
    };
  }
}

// ---- the self-test's fake drivers ---------------------------------------------------------------

/** Figures that look like a run's, made up: only for --self-test, which
 * tests the suite and the report, never a system. */
function fakeFactory(ctx: SuiteContext): ReturnType<DriverFactory> {
  const base: [string, "node" | "c", string, number][] = [
    ["stockd gRPC", "node", "grpc-js", 40_000],
    ["stockd gRPC", "c", "h2load", 90_000],
    ["stockd gRPC batch", "node", "grpc-js", 400_000],
    ["stockd HTTP", "node", "autocannon", 30_000],
    ["stockd HTTP", "c", "wrk", 70_000],
    ["echo gRPC", "node", "grpc-js", 45_000],
    ["echo gRPC", "c", "h2load", 100_000],
    ["echo HTTP", "node", "autocannon", 35_000],
    ["echo HTTP", "c", "wrk", 110_000],
    ["postgres sync=on", "node", "pg", 3_000],
    ["postgres sync=on", "c", "pgbench", 5_000],
    ["redis", "node", "ioredis", 60_000],
  ];
  const workers = ctx.workerCount ?? 1;
  const drivers = base.map(
    ([system, client, tool, okPerSBase]): Driver => ({
      system,
      client,
      tool,
      run: async (spec) => {
        await new Promise((r) => setTimeout(r, 5));
        if (
          system.startsWith("echo") &&
          (spec.scenario === "checkout" || spec.scenario === "contention")
        ) {
          throw new Skipped("an echo has no stock");
        }
        if (system === "redis" && spec.scenario === "checkout") throw new Error("fake failure");
        const contention = spec.scenario === "contention";
        const full =
          okPerSBase * Math.min(1, spec.clients / 32) * (system.includes("batch") ? workers : 1);
        const okPerS = spec.ratePerS === undefined ? full : Math.min(full, spec.ratePerS);
        const seconds = contention ? 0.05 : spec.durationMs / 1000;
        const ok = contention ? 100 : Math.round(okPerS * seconds);
        const p50 = (1000 * Math.min(spec.clients, 64)) / full;
        return {
          system,
          client,
          tool,
          scenario: spec.scenario,
          clients: spec.clients,
          ...(spec.ratePerS === undefined ? {} : { ratePerS: spec.ratePerS }),
          seconds,
          ok,
          refused: contention ? spec.clients - 100 : 0,
          errors: 0,
          okPerS: contention ? 2000 : Math.round(okPerS),
          latencyMs: { p50: round(p50, 3), p99: round(p50 * 4, 3), p999: round(p50 * 9, 3) },
          serverCpuUsPerOk: round(1e6 / okPerSBase, 1),
          consistent: system.startsWith("echo") ? null : true,
          notes: system === "redis" ? ["fake: appendfsync everysec (not durable)"] : [],
        };
      },
      close: async () => {},
    }),
  );
  return Promise.resolve({
    drivers,
    skipped: [{ system: "postgres sync=off", reason: "self-test: pretends not to be reachable" }],
  });
}

/** bench/peers exports the peers as a list of drivers, not as a factory:
 * the peers need none of the suite's context (their durability is their
 * own: synchronous_commit on and off, Redis's AOF as configured), and a
 * peer that cannot run throws Skipped from `run`. */
const peerFactory: DriverFactory = () => Promise.resolve({ drivers: peerDrivers(), skipped: [] });

// ---- main ---------------------------------------------------------------------------------------

function writeSelfTestResults(result: SuiteResults): string {
  const dir = mkdtempSync(join(tmpdir(), "stockd-bench-selftest-"));
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `suite-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
  return path;
}

async function makeDrivers(s: SuiteSettings, factories: DriverFactory[], skipped: LeftOut[]) {
  const ctx: SuiteContext = { quick: s.quick, durability: s.durability };
  const drivers: Driver[] = [];
  for (const factory of factories) {
    const made = await factory(ctx);
    drivers.push(...made.drivers);
    for (const x of made.skipped) skipped.push({ section: "compare", ...x });
  }
  return drivers;
}

async function main(): Promise<void> {
  const s = parseSettings(process.argv.slice(2));
  if (s.selfTest) {
    Object.assign(s, { warmupMs: 10, durationMs: 50, memoryItemCount: 10_000 });
  }
  const m = machine();
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  console.log(
    `stockd comparison suite${s.selfTest ? " — SELF-TEST, fake drivers, no figures" : ""}`,
  );
  console.log(`${machineLine(m)} | durability ${s.durability} | ${s.quick ? "quick" : "full"} run`);
  const factories: DriverFactory[] = s.selfTest ? [fakeFactory] : [stockdDrivers, peerFactory];
  const ledger: Ledger = { runs: [], skipped: [], failed: [], broken: new Set() };
  const drivers = await makeDrivers(s, factories, ledger.skipped);
  for (const x of ledger.skipped) console.log(`left out: ${x.system}: ${x.reason}`);
  const p = plan(s, drivers);
  const used = new Set([...p.compare.map((j) => j.driver), ...p.latency]);
  for (const d of drivers) if (!used.has(d)) await closeQuietly(d, ledger.failed, "compare");
  printPlan(s, p);
  const progress: Progress = {
    slackMs: s.quick ? runSlackQuickMs : runSlackMs,
    done: 0,
    planned: p.runCount,
    startedMs: performance.now(),
  };
  const sections: SuiteResults["sections"] = {};
  if (s.sections.includes("compare")) await sectionCompare(p, ledger, progress);
  if (s.sections.includes("latency"))
    sections.latency = await sectionLatency(s, p, ledger, progress);
  if (s.sections.includes("scaling") && matchesName(s.scalingSystem, s.systemFilters)) {
    sections.scaling = await sectionScaling(
      s,
      s.selfTest ? fakeFactory : stockdDrivers,
      ledger,
      progress,
    );
  }
  if (s.sections.includes("memory")) sections.memory = await sectionMemory(s);
  const results: SuiteResults = {
    kind: suiteResultsKind,
    version: suiteResultsVersion,
    machine: m,
    settings: s,
    startedAt,
    elapsedS: round((performance.now() - t0) / 1000, 1),
    loadAverageAtEnd: round(loadavg()[0] ?? 0, 2),
    runs: ledger.runs,
    skipped: ledger.skipped,
    failed: ledger.failed,
    sections,
  };
  const path = s.selfTest ? writeSelfTestResults(results) : writeResults("suite", results);
  const written = await writeReport(results, path);
  for (const e of written.chartErrors) console.log(`chart not drawn: ${e}`);
  printTargets(results);
  console.log(`\nresults: ${shownPath(path)}`);
  console.log(
    `report:  ${shownPath(written.reportPath)} (also ${shownPath(written.latestPath)}, ${written.chartPaths.length} charts)`,
  );
  console.log(`total ${results.elapsedS} s`);
}

function printPlan(s: SuiteSettings, p: Plan): void {
  console.log(
    `plan: ${s.warmupMs / 1000} s warm-up + ${s.durationMs / 1000} s measured per run; ` +
      `clients ${s.clients.join(",")} (contention ${s.contentionClients}); sections ${s.sections.join(",")}`,
  );
  const byDriver = new Map<Driver, string[]>();
  for (const j of p.compare) {
    const list = byDriver.get(j.driver) ?? [];
    if (!list.includes(j.spec.scenario)) list.push(j.spec.scenario);
    byDriver.set(j.driver, list);
  }
  for (const [d, scenarios] of byDriver)
    console.log(`  compare ${driverKey(d)}: ${scenarios.join(", ")}`);
  if (p.latency.length > 0) {
    console.log(
      `  latency ${p.latency.map(driverKey).join("; ")}: uniform at ` +
        `${p.latencyFractions.map((f) => `${f * 100}%`).join(", ")} of the maximum`,
    );
  }
  if (s.sections.includes("scaling")) {
    console.log(`  scaling ${s.scalingSystem}: uniform, workers ${s.workerCounts.join(", ")}`);
  }
  if (s.sections.includes("memory")) {
    console.log(`  memory: ${grouped(s.memoryItemCount)} positions and holds`);
  }
  console.log(`plan: ${p.runCount} runs, about ${Math.round(p.estimateMs / 1000)} s (a guess)`);
}

function printTargets(results: SuiteResults): void {
  const rows = targetRows(results);
  console.log("\n== targets");
  for (const r of rows) {
    const verdict = r.verdict.replace(/\*/g, "");
    console.log(`${verdict.padEnd(12)} ${r.target}: ${r.measured} (${r.bound}) — ${r.figures}`);
  }
}

await main();
