// The HTTP gateway benchmark: stockd (`bin/stockd.js serve`, a child
// process) and a bare node:http echo server (another child) driven by the
// same autocannon load with the same connections and duration; on the
// closed-loop reserve scenarios also the JSON floor (bench/lib/floor_http.ts:
// node:http that parses, validates and answers JSON, nothing else). Prints
// requests/s, p50/p99, the server's CPU per request and every answer by
// status (2xx, 409, 429 and the rest apart: an answer is not a success);
// stockd's throughput as a fraction of the echo's; a markdown table; writes
// bench/results/http-<time>.json. Figures are never asserted.
//
//   npm run bench:http [-- --quick] [-- --only reserve-hot,flow] [-- --duration S]
//     [-- --connections N] [-- --durability relaxed] [-- --loadgen worker|inline]
//     [-- --echo-only]
//
// The load generator (bench/lib/http_load.ts) runs in a worker thread of
// this process, or with --loadgen inline in the main thread.

import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { benchArgs } from "./lib/args.ts";
import {
  type GatewaySeed,
  jwtSecret,
  type SeedPlan,
  seedGateway,
  signTokens,
  syntheticSeed,
  type Tokens,
} from "./lib/gateway_seed.ts";
import type { PhaseMark } from "./lib/grpc_load.ts";
import {
  type HttpLoadOptions,
  type HttpLoadResult,
  type HttpWorkload,
  runHttpLoadInWorker,
  runLoad,
} from "./lib/http_load.ts";
import {
  type CpuFigures,
  cpuFigures,
  cpuMeter,
  cpuNotes,
  machine,
  machineLine,
  otherCoresNoticeable,
  type ServerChild,
  startEcho,
  startFloor,
  startStockd,
  writeResults,
} from "./lib/server_child.ts";
import {
  type ServerView,
  scrape,
  serverView,
  viewCells,
  viewHeaders,
  viewNote,
} from "./lib/server_view.ts";
import {
  compareWithEcho,
  type EchoComparison,
  grouped,
  round,
  type Target,
  table,
  target,
  verdictText,
} from "./lib/stats.ts";

/** reserve-half-rate: evenly paced (runEvenRate); reserve-half-rate-ac:
 * autocannon's overallRate, which sends in bursts. */
const scenarioNames = [
  "reserve-hot",
  "reserve-uniform",
  "flow",
  "reserve-half-rate",
  "reserve-half-rate-ac",
] as const;
type ScenarioName = (typeof scenarioNames)[number];

const help = `Usage: npm run bench:http -- [options]

  --quick                 1 s warm-up and 3 s per run (about a minute in all)
  --only NAMES            comma-separated: ${scenarioNames.join(", ")}
                          (a half-rate run also runs reserve-uniform, whose rate it halves)
  --duration S            seconds per measured run [10; quick 3]
  --connections N         autocannon connections, the same for stockd and the echo [64]
  --durability MODE       stockd's journal: fsync or relaxed [fsync]
  --hold-duration D       stockd's default hold duration [2s]
  --workers N             stockd's worker threads [stockd's default]
  --loadgen MODE          worker (a worker thread) or inline (the main thread) [worker]
  --echo-only             the echo server alone, without stockd (to test the harness)`;

/** Targets, from the issue. */
const echoFractionMin = 0.8;
const halfRateP99MsMax = 10;

const seedPlan: SeedPlan = {
  warehouseCount: 100,
  uniformProductCount: 100,
  flowProductCount: 100,
  receiptsPerPosition: 1,
};
/** Customers per connection of the flow: a flow takes a free one, and
 * each run may leave up to one per connection cut off mid-flow. */
const customersPerConnection = 4;

// ---- settings -------------------------------------------------------------------------

interface Settings {
  quick: boolean;
  only: ScenarioName[];
  warmupMs: number;
  durationMs: number;
  connections: number;
  durability: "fsync" | "relaxed";
  holdDuration: string;
  workerCount: number | undefined;
  loadgen: "worker" | "inline";
  echoOnly: boolean;
}

function settings(argv: string[]): Settings {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(help);
    process.exit(0);
  }
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string" },
        duration: { type: "string" },
        connections: { type: "string" },
        durability: { type: "string", default: "fsync" },
        "hold-duration": { type: "string", default: "2s" },
        workers: { type: "string" },
        loadgen: { type: "string", default: "worker" },
        "echo-only": { type: "boolean", default: false },
      },
    }),
  );
  const only = (values.only ?? "").split(",").filter((n) => n !== "");
  for (const n of only) {
    if (!(scenarioNames as readonly string[]).includes(n)) {
      usage(`--only takes ${scenarioNames.join(", ")} (comma-separated), not "${n}"`);
    }
  }
  if (values.durability !== "fsync" && values.durability !== "relaxed") {
    usage("--durability is fsync or relaxed");
  }
  if (values.loadgen !== "worker" && values.loadgen !== "inline") {
    usage("--loadgen is worker or inline");
  }
  const quick = values.quick;
  return {
    quick,
    only: only.length > 0 ? (only as ScenarioName[]) : [...scenarioNames],
    // autocannon ends a run on its once-a-second tick: whole seconds.
    warmupMs: quick ? 1000 : 2000,
    durationMs: Math.ceil(positive("--duration", values.duration, quick ? 3 : 10)) * 1000,
    connections: count("--connections", values.connections, 64, 1),
    durability: values.durability as Settings["durability"],
    holdDuration: values["hold-duration"],
    workerCount:
      values.workers === undefined ? undefined : count("--workers", values.workers, 0, 0),
    loadgen: values.loadgen as Settings["loadgen"],
    echoOnly: values["echo-only"],
  };
}

const { positive, count, parseOrUsage, usage } = benchArgs(() => help);

// ---- one run ------------------------------------------------------------------------------

/** echo: the bare transport; floor: node:http that parses, validates and
 * answers JSON (bench/lib/floor_http.ts), run beside them on the closed-loop
 * reserve scenarios. */
type ServerKind = "stockd" | "echo" | "floor";

interface Run {
  scenario: ScenarioName;
  server: ServerKind;
  connections: number;
  ratePerS: number | null;
  load: HttpLoadResult;
  /** Answers of every status per second. */
  answersPerS: number;
  okPerS: number;
  flowsPerS: number;
  /** Answers by class: a 409 (out of stock) and a 429 (overload) are
   * answers, not successes. */
  counts: { ok: number; conflict: number; overload: number; otherClient: number; server: number };
  /** Per answer (of any status) and in cores. */
  cpu: CpuFigures;
  /** stockd's /metrics over the measured window (null: the echo, or no answer). */
  view: ServerView | null;
}

function workloadOf(name: ScenarioName, seed: GatewaySeed, tokens: Tokens): HttpWorkload {
  const body = (sku: { productId: string; warehouseId: string }) =>
    JSON.stringify({ lines: [{ ...sku, quantity: 1 }] });
  if (name === "reserve-hot")
    return { kind: "reserve", bodies: [body(seed.hot)], token: tokens.service };
  if (name === "flow") {
    return {
      kind: "flow",
      customerTokens: tokens.customers,
      serviceToken: tokens.service,
      productIds: seed.flowProductIds,
    };
  }
  return { kind: "reserve", bodies: seed.uniform.map(body), token: tokens.service };
}

function countsOf(byStatus: Record<string, number>): Run["counts"] {
  const c = { ok: 0, conflict: 0, overload: 0, otherClient: 0, server: 0 };
  for (const [key, n] of Object.entries(byStatus)) {
    const status = Number(key.slice(key.lastIndexOf(" ") + 1));
    if (status >= 200 && status <= 299) c.ok += n;
    else if (status === 409) c.conflict += n;
    else if (status === 429) c.overload += n;
    else if (status >= 500) c.server += n;
    else c.otherClient += n;
  }
  return c;
}

async function runOne(
  s: Settings,
  scenario: ScenarioName,
  server: ServerChild,
  kind: ServerKind,
  workload: HttpWorkload,
  ratePerS: number | null,
): Promise<Run> {
  const options: HttpLoadOptions = {
    url: `http://127.0.0.1:${server.httpPort}`,
    connections: s.connections,
    warmupMs: s.warmupMs,
    durationMs: s.durationMs,
    ratePerS,
    pacing: scenario === "reserve-half-rate" ? "even" : "autocannon",
    workload,
  };
  const meter = cpuMeter(server);
  const url = options.url;
  let atStart: ReturnType<typeof scrape> = Promise.resolve(null);
  let atEnd: ReturnType<typeof scrape> = Promise.resolve(null);
  const onPhase = (mark: PhaseMark) => {
    if (mark === "measure") {
      meter.start();
      if (kind === "stockd") atStart = scrape(url);
    } else {
      meter.stop();
      if (kind === "stockd") atEnd = scrape(url);
    }
  };
  const load =
    s.loadgen === "worker"
      ? await runHttpLoadInWorker(options, onPhase)
      : await runLoad(options, onPhase);
  const view = serverView(
    await atStart,
    await atEnd,
    "http",
    scenario === "flow" ? "Checkout" : "Reserve",
  );
  const perS = (n: number) => (load.elapsedMs <= 0 ? 0 : round((n * 1000) / load.elapsedMs));
  const counts = countsOf(load.byStatus);
  return {
    scenario,
    server: kind,
    connections: s.connections,
    ratePerS,
    load,
    answersPerS: perS(load.answers),
    okPerS: perS(counts.ok),
    flowsPerS: perS(load.flows),
    counts,
    cpu: cpuFigures(meter.spent(), load.answers, load.elapsedMs),
    view,
  };
}

// ---- report ---------------------------------------------------------------------------------

const ms = (x: number) => x.toFixed(2);

function headline(r: Run): string {
  return r.scenario === "flow" ? `${grouped(r.flowsPerS)} flows/s` : `${grouped(r.okPerS)} 2xx/s`;
}

function loadText(r: Run): string {
  if (r.ratePerS === null) return `${r.connections} conns`;
  return `${grouped(r.ratePerS)}/s ${r.scenario === "reserve-half-rate" ? "even" : "bursts"}`;
}

function throughputOf(r: Run): number {
  return r.scenario === "flow" ? r.flowsPerS : r.answersPerS;
}

function printRuns(runs: Run[]): void {
  console.log(
    table(
      [
        "scenario",
        "server",
        "load",
        "req/s",
        "headline",
        "p50 ms",
        "p99 ms",
        "2xx",
        "409",
        "429",
        "other 4xx",
        "5xx",
        "no answer",
        "server CPU us/req",
        "server cores",
        "loadgen cores",
        "other cores",
      ],
      runs.map((r) => [
        r.scenario,
        r.server,
        loadText(r),
        grouped(r.answersPerS),
        headline(r),
        ms(r.load.okLatency.p50Ms),
        ms(r.load.okLatency.p99Ms),
        grouped(r.counts.ok),
        grouped(r.counts.conflict),
        grouped(r.counts.overload),
        grouped(r.counts.otherClient),
        grouped(r.counts.server),
        grouped(r.load.errors + r.load.timeouts),
        r.cpu.serverUsPerOp === null ? "-" : r.cpu.serverUsPerOp.toFixed(1),
        r.cpu.serverCores === null ? "-" : r.cpu.serverCores.toFixed(2),
        r.cpu.loadgenCores.toFixed(2),
        r.cpu.otherCores === null ? "-" : r.cpu.otherCores.toFixed(2),
      ]),
    ),
  );
  console.log(
    "(p50/p99: 2xx answers; a flow's requests are its three steps; server CPU per answer of any status;\n" +
      " cores: CPU time over the window, server = the child and all its threads, loadgen = this process)",
  );
  for (const r of runs)
    for (const n of cpuNotes(`${r.scenario} / ${r.server}`, r.cpu)) console.log(`note: ${n}`);
  printServerViews(runs);
  console.log("\nAnswers in the measured run, by step and status:");
  for (const r of runs) {
    const parts = Object.entries(r.load.byStatus)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${grouped(v)}`);
    console.log(`  ${r.scenario} / ${r.server}: ${parts.join(", ") || "none"}`);
    for (const [k, body] of Object.entries(r.load.errorSamples))
      console.log(`    first ${k}: ${body}`);
  }
}

/** stockd's own figures beside the load generator's p99. */
function printServerViews(runs: Run[]): void {
  const viewed = runs.filter((r) => r.view !== null);
  if (viewed.length === 0) return;
  console.log("\nstockd's view of the same windows (its /metrics at their start and end):");
  console.log(
    table(
      ["scenario", ...viewHeaders],
      viewed.map((r) => [r.scenario, ...viewCells(r.load.okLatency.p99Ms, r.view!)]),
    ),
  );
  console.log(viewNote("Reserve (flow: Checkout)"));
}

type Comparison = EchoComparison<ScenarioName>;

function comparisons(runs: Run[]): Comparison[] {
  return compareWithEcho(runs, throughputOf);
}

interface FloorComparison {
  scenario: ScenarioName;
  floor: number;
  echo: number;
  floorOfEcho: number;
  stockd: number | null;
  stockdOfFloor: number | null;
}

/** Each floor run against the echo and stockd runs of its scenario. */
function floorComparisons(runs: Run[]): FloorComparison[] {
  const out: FloorComparison[] = [];
  for (const f of runs) {
    if (f.server !== "floor") continue;
    const of = (kind: ServerKind) =>
      runs.find((r) => r.server === kind && r.scenario === f.scenario && r.ratePerS === null);
    const echo = of("echo");
    if (echo === undefined) continue;
    const stockd = of("stockd");
    const floor = throughputOf(f);
    const e = throughputOf(echo);
    out.push({
      scenario: f.scenario,
      floor,
      echo: e,
      floorOfEcho: e > 0 ? round(floor / e, 3) : 0,
      stockd: stockd === undefined ? null : throughputOf(stockd),
      stockdOfFloor:
        stockd === undefined || floor <= 0 ? null : round(throughputOf(stockd) / floor, 3),
    });
  }
  return out;
}

function markdown(runs: Run[]): string {
  const lines = [
    "| scenario | server | load | req/s | throughput | vs echo | p50 ms | p99 ms | 2xx / 409 / 429 / other | server CPU µs/req |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
  ];
  for (const r of runs) {
    const echo = runs.find((e) => e.server === "echo" && e.scenario === r.scenario);
    const vsEcho =
      r.server === "echo" || r.ratePerS !== null || echo === undefined || throughputOf(echo) <= 0
        ? ""
        : `${((throughputOf(r) / throughputOf(echo)) * 100).toFixed(0)}%`;
    const load = loadText(r);
    const other = r.counts.otherClient + r.counts.server + r.load.errors + r.load.timeouts;
    lines.push(
      `| ${r.scenario} | ${r.server} | ${load} | ${grouped(r.answersPerS)} | ${headline(r)} | ` +
        `${vsEcho} | ` +
        `${ms(r.load.okLatency.p50Ms)} | ${ms(r.load.okLatency.p99Ms)} | ` +
        `${r.counts.ok} / ${r.counts.conflict} / ${r.counts.overload} / ${other} | ` +
        `${r.cpu.serverUsPerOp ?? "-"} |`,
    );
  }
  return lines.join("\n");
}

function targetsOf(runs: Run[], cmp: Comparison[]): Target[] {
  const out: Target[] = [];
  for (const c of cmp) {
    if (c.scenario !== "reserve-hot" && c.scenario !== "reserve-uniform") continue;
    out.push(
      target(
        `${c.scenario}: stockd/echo throughput`,
        c.fraction * 100,
        "%",
        "atLeast",
        echoFractionMin * 100,
      ),
    );
  }
  for (const [scenario, how] of [
    ["reserve-half-rate", "evenly paced"],
    ["reserve-half-rate-ac", "autocannon overallRate"],
  ] as const) {
    const half = runs.find((r) => r.scenario === scenario && r.server === "stockd");
    if (half === undefined) continue;
    out.push(
      target(
        `reserve at 50% of max rate (${how}): p99`,
        half.load.okLatency.p99Ms,
        "ms",
        "below",
        halfRateP99MsMax,
      ),
    );
  }
  return out;
}

// ---- main -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  const m = machine();
  const started = performance.now();
  console.log("stockd HTTP gateway benchmark");
  console.log(machineLine(m));
  console.log(
    `${s.quick ? "quick" : "full"} run | ${s.durationMs / 1000} s per run after ${s.warmupMs / 1000} s warm-up | ` +
      `${s.connections} connections | durability ${s.durability} | hold ${s.holdDuration} | ` +
      `autocannon ${s.loadgen === "worker" ? "in a worker thread" : "in the main thread"}`,
  );
  const secret = jwtSecret();
  const echo = await startEcho("http");
  const floor = await startFloor();
  let stockd: ServerChild | null = null;
  try {
    const tokens = await signTokens(secret, s.connections * customersPerConnection);
    let seed: GatewaySeed;
    if (s.echoOnly) {
      console.log("--echo-only: stockd is not started; the echo runs alone");
      seed = syntheticSeed(seedPlan);
    } else {
      stockd = await startStockd({
        durability: s.durability,
        holdDuration: s.holdDuration,
        workerCount: s.workerCount,
        jwtSecret: secret,
      });
      const t0 = performance.now();
      seed = await seedGateway(`http://127.0.0.1:${stockd.httpPort}`, tokens.admin, seedPlan);
      console.log(
        `stockd pid ${stockd.pid}, HTTP port ${stockd.httpPort}; seeded ${seed.warehouseIds.length} warehouses, ` +
          `${grouped(seed.uniform.length + 1 + 2 * seed.flowProductIds.length)} positions in ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    }
    const runs = await runScenarios(s, seed, tokens, { echo, floor, stockd });
    report(s, m, runs, started);
  } catch (err) {
    if (stockd !== null) {
      console.error(`stockd's last log lines:\n  ${stockd.logTail().join("\n  ")}`);
    }
    throw err;
  } finally {
    await echo.stop();
    await floor.stop();
    await stockd?.stop();
  }
}

async function runScenarios(
  s: Settings,
  seed: GatewaySeed,
  tokens: Tokens,
  servers: { echo: ServerChild; floor: ServerChild; stockd: ServerChild | null },
): Promise<Run[]> {
  const { echo, floor, stockd } = servers;
  const runs: Run[] = [];
  const wanted = new Set<ScenarioName>(s.only);
  // The half-rate run needs the closed-loop maximum it halves.
  if (wanted.has("reserve-half-rate") || wanted.has("reserve-half-rate-ac")) {
    wanted.add("reserve-uniform");
  }
  for (const name of scenarioNames) {
    if (!wanted.has(name)) continue;
    const workload = workloadOf(name, seed, tokens);
    let rate: number | null = null;
    if (name === "reserve-half-rate" || name === "reserve-half-rate-ac") {
      const max = runs.find(
        (r) =>
          r.scenario === "reserve-uniform" && r.server === (stockd === null ? "echo" : "stockd"),
      );
      rate = Math.max(1, Math.round((max?.okPerS ?? 0) / 2));
    }
    const order: [ServerKind, ServerChild][] = [["echo", echo]];
    if (name === "reserve-hot" || name === "reserve-uniform") order.push(["floor", floor]);
    if (stockd !== null) order.push(["stockd", stockd]);
    for (const [kind, server] of order) {
      const t0 = performance.now();
      const r = await runOne(s, name, server, kind, workload, rate);
      runs.push(r);
      console.log(
        `${name} / ${r.server}: ${grouped(r.answersPerS)} req/s, ${headline(r)}, ` +
          `p99 ${ms(r.load.okLatency.p99Ms)} ms (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
  }
  return runs;
}

function report(s: Settings, m: ReturnType<typeof machine>, runs: Run[], started: number): void {
  console.log("\n== Runs");
  printRuns(runs);
  const cmp = comparisons(runs);
  console.log(
    "\n== stockd as a fraction of the bare node:http echo (same load generator and load)",
  );
  console.log(
    table(
      ["scenario", "stockd", "echo", "stockd/echo", "other work (cores)"],
      cmp.map((c) => [
        c.scenario,
        grouped(c.stockd),
        grouped(c.echo),
        `${(c.fraction * 100).toFixed(1)}%`,
        c.otherCoresMax === null
          ? "-"
          : `${c.otherCoresMax.toFixed(2)}${c.otherCoresMax >= otherCoresNoticeable ? " (noisy)" : ""}`,
      ]),
    ),
  );
  console.log("(answers/s; flow: completed flows/s)");
  const floors = floorComparisons(runs);
  if (floors.length > 0) {
    console.log(
      "\n== The JSON floor: node:http that parses the body, validates it with stockd's schema " +
        "(Ajv) and answers JSON, and does nothing else",
    );
    console.log(
      table(
        ["scenario", "floor", "echo", "floor/echo", "stockd", "stockd/floor"],
        floors.map((f) => [
          f.scenario,
          grouped(f.floor),
          grouped(f.echo),
          `${(f.floorOfEcho * 100).toFixed(1)}%`,
          f.stockd === null ? "-" : grouped(f.stockd),
          f.stockdOfFloor === null ? "-" : `${(f.stockdOfFloor * 100).toFixed(1)}%`,
        ]),
      ),
    );
    console.log(
      "(floor/echo bounds stockd/echo from above: what a handler keeps of the echo's rate\n" +
        " once it reads JSON properly, before any token, engine or journal work)",
    );
  }
  const targets = targetsOf(runs, cmp);
  console.log("\n== Targets");
  console.log(
    table(
      ["figure", "measured", "target"],
      targets.map((t) => [t.name, `${round(t.value, 2)} ${t.unit}`, verdictText(t)]),
    ),
  );
  const caption =
    `${m.cores} cores (${m.cpuModel}), Node ${m.node}, commit ${m.commit}, ` +
    `durability ${s.durability}, hold ${s.holdDuration}, autocannon, ${s.connections} connections, ` +
    `${s.durationMs / 1000} s per run${s.quick ? " (quick)" : ""}`;
  const md = `_${caption}_\n\n${markdown(runs)}`;
  console.log("\n== Markdown\n");
  console.log(md);
  const elapsedS = round((performance.now() - started) / 1000, 1);
  const path = writeResults("http", {
    machine: m,
    settings: s,
    seedPlan,
    runs,
    comparisons: cmp,
    floorComparisons: floors,
    targets,
    markdown: md,
    elapsedS,
    loadAverageAtEnd: round(loadavg()[0] ?? 0, 2),
  });
  console.log(`\ntotal ${elapsedS} s | results in ${path}`);
}

await main();
