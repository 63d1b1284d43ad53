// The gRPC gateway benchmark: stockd (`bin/stockd.js serve`, a child
// process) and a bare grpc-js echo server (another child) driven by the same
// load generator with the same calls in flight, channels and duration.
// Prints calls/s, p50/p99, the server's CPU per call and every answer by
// gRPC code; stockd's throughput as a fraction of the echo's; ReserveBatch
// reservations/s; a markdown table; writes bench/results/grpc-<time>.json.
// Figures are measured and compared with targets, never asserted.
//
//   npm run bench:grpc [-- --quick] [-- --only reserve-hot,batch] [-- --duration S]
//     [-- --connections N] [-- --in-flight N] [-- --batch-in-flight N]
//     [-- --durability relaxed] [-- --client grpc-js|http2]
//     [-- --loadgen worker|inline] [-- --echo-only]
//
// The load generator (bench/lib/grpc_load.ts) runs in a worker thread; run
// in the main thread (--loadgen inline) it drove no more calls, and
// sometimes fewer. `--client http2` swaps grpc-js for a bare HTTP/2 client
// that costs the load generator about half the CPU per call.

import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ReserveBatchRequestSchema,
  type ReserveRequest,
  ReserveRequestSchema,
} from "../src/gen/stockd/v1/api_pb.ts";
import { benchArgs } from "./lib/args.ts";
import { echoPath } from "./lib/echo_grpc.ts";
import {
  type GatewaySeed,
  jwtSecret,
  type SeedPlan,
  type Sku,
  seedGateway,
  signTokens,
  syntheticSeed,
  type Tokens,
} from "./lib/gateway_seed.ts";
import {
  type GrpcClientKind,
  type GrpcLoadOptions,
  type GrpcLoadResult,
  type GrpcWorkload,
  methodPaths,
  type PhaseMark,
  runGrpcLoad,
  runGrpcLoadInWorker,
} from "./lib/grpc_load.ts";
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
  startStockd,
  writeResults,
} from "./lib/server_child.ts";
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

const scenarioNames = [
  "reserve-hot",
  "reserve-uniform",
  "flow",
  "batch",
  "reserve-half-rate",
] as const;
type ScenarioName = (typeof scenarioNames)[number];

/** Targets, from the issue. */
const echoFractionMin = 0.8;
const halfRateP99MsMax = 10;
const batchReservationsPerSMin = 200_000;

const seedPlan: SeedPlan = {
  warehouseCount: 100,
  uniformProductCount: 100,
  flowProductCount: 100,
  receiptsPerPosition: 1,
};
/** Reservations per ReserveBatch call, and distinct batches sent. */
const batchSize = 1000;
const batchBodyCount = 8;
const batchInFlightDefault = 4;
/** Customers per flow session in flight: a session takes a free one. */
const customersPerSession = 2;

const help = `Usage: npm run bench:grpc -- [options]

  --quick                 0.7 s warm-up and 2 s per run (about 40 s in all)
  --only NAMES            comma-separated: ${scenarioNames.join(", ")}
                          (reserve-half-rate also runs reserve-uniform, whose rate it halves)
  --duration S            seconds per measured run [10; quick 2]
  --connections N         channels, each its own HTTP/2 connection [4]
  --in-flight N           calls (flow: customers) in flight, over all channels [128]
  --batch-in-flight N     ReserveBatch calls in flight, ${batchSize} reservations each [${batchInFlightDefault}]
  --client KIND           grpc-js, or http2 (a bare node:http2 gRPC client, about half
                          the load generator's CPU per call) [grpc-js]
  --durability MODE       stockd's journal: fsync or relaxed [fsync]
  --hold-duration D       stockd's default hold duration [2s]
  --workers N             stockd's worker threads [stockd's default]
  --loadgen MODE          worker (a worker thread) or inline (the main thread) [worker]
  --echo-only             the echo server alone, without stockd (to test the harness)`;

interface Settings {
  quick: boolean;
  only: ScenarioName[];
  warmupMs: number;
  durationMs: number;
  channelCount: number;
  inFlight: number;
  batchInFlight: number;
  durability: "fsync" | "relaxed";
  holdDuration: string;
  workerCount: number | undefined;
  loadgen: "worker" | "inline";
  client: GrpcClientKind;
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
        "in-flight": { type: "string" },
        "batch-in-flight": { type: "string" },
        durability: { type: "string", default: "fsync" },
        "hold-duration": { type: "string", default: "2s" },
        workers: { type: "string" },
        loadgen: { type: "string", default: "worker" },
        client: { type: "string", default: "grpc-js" },
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
  if (values.client !== "grpc-js" && values.client !== "http2") {
    usage("--client is grpc-js or http2");
  }
  const quick = values.quick;
  return {
    quick,
    only: only.length > 0 ? (only as ScenarioName[]) : [...scenarioNames],
    warmupMs: quick ? 700 : 2000,
    durationMs: positive("--duration", values.duration, quick ? 2 : 10) * 1000,
    channelCount: count("--connections", values.connections, 4, 1),
    inFlight: count("--in-flight", values["in-flight"], 128, 1),
    batchInFlight: count("--batch-in-flight", values["batch-in-flight"], batchInFlightDefault, 1),
    durability: values.durability as Settings["durability"],
    holdDuration: values["hold-duration"],
    workerCount:
      values.workers === undefined ? undefined : count("--workers", values.workers, 0, 0),
    loadgen: values.loadgen as Settings["loadgen"],
    client: values.client as GrpcClientKind,
    echoOnly: values["echo-only"],
  };
}

const { positive, count, parseOrUsage, usage } = benchArgs(() => help);

// ---- workloads --------------------------------------------------------------------

function reserveRequest(sku: Sku): ReserveRequest {
  return create(ReserveRequestSchema, { lines: [{ ...sku, quantity: 1n }] });
}

function reserveBody(sku: Sku): Uint8Array {
  return toBinary(ReserveRequestSchema, reserveRequest(sku));
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

function workloadOf(name: ScenarioName, seed: GatewaySeed, tokens: Tokens): GrpcWorkload {
  switch (name) {
    case "reserve-hot":
      return unary(methodPaths.reserve, [reserveBody(seed.hot)], tokens.service, 0);
    case "reserve-uniform":
    case "reserve-half-rate":
      return unary(methodPaths.reserve, seed.uniform.map(reserveBody), tokens.service, 0);
    case "batch": {
      const bodies = Array.from({ length: batchBodyCount }, () =>
        toBinary(
          ReserveBatchRequestSchema,
          create(ReserveBatchRequestSchema, {
            requests: Array.from({ length: batchSize }, () => reserveRequest(pick(seed.uniform))),
          }),
        ),
      );
      return unary(methodPaths.reserveBatch, bodies, tokens.service, batchSize);
    }
    case "flow":
      return {
        kind: "flow",
        customerTokens: tokens.customers,
        serviceToken: tokens.service,
        productIds: seed.flowProductIds,
      };
  }
}

function unary(
  path: string,
  bodies: Uint8Array[],
  token: string,
  reservationsPerCall: number,
): GrpcWorkload {
  return { kind: "unary", path, bodies, token, reservationsPerCall };
}

// ---- one run --------------------------------------------------------------------------

interface Run {
  scenario: ScenarioName;
  server: "stockd" | "echo";
  inFlight: number;
  channels: number;
  ratePerS: number | null;
  load: GrpcLoadResult;
  /** Answers of every kind per second in the window. */
  callsPerS: number;
  okPerS: number;
  flowsPerS: number;
  reservationsPerS: number;
  /** Per call (of any status) and in cores. */
  cpu: CpuFigures;
  /** ReserveBatch: the server's CPU per reservation held. */
  serverCpuUsPerReservation: number | null;
}

async function runOne(
  s: Settings,
  scenario: ScenarioName,
  server: ServerChild,
  isEcho: boolean,
  workload: GrpcWorkload,
  inFlight: number,
  ratePerS: number | null,
): Promise<Run> {
  const options: GrpcLoadOptions = {
    address: `127.0.0.1:${server.grpcPort}`,
    channelCount: s.channelCount,
    inFlight,
    warmupMs: s.warmupMs,
    durationMs: s.durationMs,
    ratePerS,
    client: s.client,
    workload,
    echoPath: isEcho ? echoPath : null,
  };
  const meter = cpuMeter(server);
  const onPhase = (mark: PhaseMark) => (mark === "measure" ? meter.start() : meter.stop());
  const load =
    s.loadgen === "worker"
      ? await runGrpcLoadInWorker(options, onPhase)
      : await runGrpcLoad(options, onPhase);
  const perS = (n: number) => (load.elapsedMs <= 0 ? 0 : (n * 1000) / load.elapsedMs);
  const ok = Object.entries(load.byCode)
    .filter(([k]) => k.endsWith(" OK"))
    .reduce((n, [, v]) => n + v, 0);
  const spent = meter.spent();
  return {
    scenario,
    server: isEcho ? "echo" : "stockd",
    inFlight,
    channels: s.channelCount,
    ratePerS,
    load,
    callsPerS: round(perS(load.calls)),
    okPerS: round(perS(ok)),
    flowsPerS: round(perS(load.flows)),
    reservationsPerS: round(perS(load.reservationsOk)),
    cpu: cpuFigures(spent, load.calls, load.elapsedMs),
    serverCpuUsPerReservation:
      spent.serverUs === null || load.reservationsOk === 0
        ? null
        : round(spent.serverUs / load.reservationsOk, 2),
  };
}

// ---- report -------------------------------------------------------------------------------

const ms = (x: number) => x.toFixed(2);

function answersText(load: GrpcLoadResult): string {
  return Object.entries(load.byCode)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${grouped(v)}`)
    .join(", ");
}

function headline(r: Run): string {
  if (r.scenario === "flow") return `${grouped(r.flowsPerS)} flows/s`;
  if (r.scenario === "batch") {
    return r.server === "echo"
      ? `${grouped(r.reservationsPerS)} requests carried/s`
      : `${grouped(r.reservationsPerS)} reservations/s`;
  }
  return `${grouped(r.okPerS)} OK/s`;
}

/** The figure stockd is compared to the echo with. */
function throughputOf(r: Run): number {
  return r.scenario === "flow" ? r.flowsPerS : r.callsPerS;
}

function printRuns(runs: Run[]): void {
  console.log(
    table(
      [
        "scenario",
        "server",
        "in flight",
        "calls/s",
        "headline",
        "p50 ms",
        "p99 ms",
        "server CPU us/call",
        "server cores",
        "loadgen cores",
        "other cores",
      ],
      runs.map((r) => [
        r.scenario,
        r.server,
        r.ratePerS === null ? String(r.inFlight) : `rate ${grouped(r.ratePerS)}/s`,
        grouped(r.callsPerS),
        headline(r),
        ms(r.load.okLatency.p50Ms),
        ms(r.load.okLatency.p99Ms),
        r.cpu.serverUsPerOp === null ? "-" : r.cpu.serverUsPerOp.toFixed(1),
        r.cpu.serverCores === null ? "-" : r.cpu.serverCores.toFixed(2),
        r.cpu.loadgenCores.toFixed(2),
        r.cpu.otherCores === null ? "-" : r.cpu.otherCores.toFixed(2),
      ]),
    ),
  );
  console.log(
    "(p50/p99: answers with status OK; a flow's calls are its three steps; server CPU per call of any code;\n" +
      " cores: CPU time over the window, server = the child and all its threads, loadgen = this process)",
  );
  for (const r of runs) {
    if (r.serverCpuUsPerReservation !== null && r.server === "stockd") {
      console.log(
        `${r.scenario} / stockd: server CPU ${r.serverCpuUsPerReservation} us per reservation`,
      );
    }
    for (const n of cpuNotes(`${r.scenario} / ${r.server}`, r.cpu)) console.log(`note: ${n}`);
  }
  console.log("\nAnswers in the measured window, by method and gRPC code:");
  for (const r of runs) {
    console.log(`  ${r.scenario} / ${r.server}: ${answersText(r.load) || "none"}`);
    if (r.load.skipped > 0)
      console.log(`    sends skipped (in-flight cap): ${grouped(r.load.skipped)}`);
    if (r.load.reservationsRefused > 0) {
      console.log(`    batch results refused: ${grouped(r.load.reservationsRefused)}`);
    }
    for (const [k, msg] of Object.entries(r.load.errorSamples)) {
      console.log(`    first ${k}: ${msg}`);
    }
  }
}

type Comparison = EchoComparison<ScenarioName>;

function comparisons(runs: Run[]): Comparison[] {
  return compareWithEcho(runs, throughputOf);
}

function markdown(runs: Run[], cmp: Comparison[]): string {
  const lines = [
    "| scenario | server | load | calls/s | throughput | vs echo | p50 ms | p99 ms | server CPU µs/call |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of runs) {
    const c = r.server === "stockd" ? cmp.find((x) => x.scenario === r.scenario) : undefined;
    const load = r.ratePerS === null ? `${r.inFlight} in flight` : `${grouped(r.ratePerS)}/s`;
    lines.push(
      `| ${r.scenario} | ${r.server} | ${load} | ${grouped(r.callsPerS)} | ${headline(r)} | ` +
        `${c === undefined || r.ratePerS !== null ? "" : `${(c.fraction * 100).toFixed(0)}%`} | ` +
        `${ms(r.load.okLatency.p50Ms)} | ${ms(r.load.okLatency.p99Ms)} | ` +
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
  const half = runs.find((r) => r.scenario === "reserve-half-rate" && r.server === "stockd");
  if (half !== undefined) {
    out.push(
      target(
        "reserve at 50% of max rate: p99",
        half.load.okLatency.p99Ms,
        "ms",
        "below",
        halfRateP99MsMax,
      ),
    );
  }
  const batch = runs.find((r) => r.scenario === "batch" && r.server === "stockd");
  if (batch !== undefined) {
    out.push(
      target(
        "ReserveBatch reservations/s",
        batch.reservationsPerS,
        "/s",
        "atLeast",
        batchReservationsPerSMin,
      ),
    );
  }
  return out;
}

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  const m = machine();
  const started = performance.now();
  console.log("stockd gRPC gateway benchmark");
  console.log(machineLine(m));
  console.log(
    `${s.quick ? "quick" : "full"} run | ${s.durationMs / 1000} s per run after ${s.warmupMs / 1000} s warm-up | ` +
      `${s.channelCount} channels, ${s.inFlight} calls in flight | durability ${s.durability} | ` +
      `hold ${s.holdDuration} | ${s.client} client ${s.loadgen === "worker" ? "in a worker thread" : "in the main thread"}`,
  );
  const secret = jwtSecret();
  const echo = await startEcho("grpc");
  let stockd: ServerChild | null = null;
  try {
    let seed: GatewaySeed;
    const tokens = await signTokens(secret, s.inFlight * customersPerSession);
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
        `stockd pid ${stockd.pid}, gRPC port ${stockd.grpcPort}; seeded ${seed.warehouseIds.length} warehouses, ` +
          `${grouped(seed.uniform.length + 1 + 2 * seed.flowProductIds.length)} positions over HTTP in ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    }
    const runs = await runScenarios(s, seed, tokens, echo, stockd);
    report(s, m, runs, started);
  } catch (err) {
    if (stockd !== null) {
      console.error(`stockd's last log lines:\n  ${stockd.logTail().join("\n  ")}`);
    }
    throw err;
  } finally {
    await echo.stop();
    await stockd?.stop();
  }
}

async function runScenarios(
  s: Settings,
  seed: GatewaySeed,
  tokens: Tokens,
  echo: ServerChild,
  stockd: ServerChild | null,
): Promise<Run[]> {
  const runs: Run[] = [];
  const wanted = new Set<ScenarioName>(s.only);
  // The half-rate run needs the closed-loop maximum it halves.
  if (wanted.has("reserve-half-rate")) wanted.add("reserve-uniform");
  for (const name of scenarioNames) {
    if (!wanted.has(name)) continue;
    const workload = workloadOf(name, seed, tokens);
    const inFlight = name === "batch" ? s.batchInFlight : s.inFlight;
    let rate: number | null = null;
    if (name === "reserve-half-rate") {
      const max = runs.find(
        (r) =>
          r.scenario === "reserve-uniform" && r.server === (stockd === null ? "echo" : "stockd"),
      );
      rate = Math.max(1, Math.round((max?.okPerS ?? 0) / 2));
    }
    // The open loop allows many more calls in flight than the closed loop
    // has: a stall shows as latency, not as a slower sender.
    const cap = rate === null ? inFlight : inFlight * 8;
    for (const server of stockd === null ? [echo] : [echo, stockd]) {
      const t0 = performance.now();
      const r = await runOne(s, name, server, server === echo, workload, cap, rate);
      runs.push(r);
      console.log(
        `${name} / ${r.server}: ${grouped(r.callsPerS)} calls/s, ${headline(r)}, ` +
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
  console.log("\n== stockd as a fraction of the bare grpc-js echo (same load generator and load)");
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
  console.log("(calls/s; flow: completed flows/s; batch: calls/s of 1,000 reservations each)");
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
    `durability ${s.durability}, hold ${s.holdDuration}, ${s.client} client, ${s.channelCount} channels, ` +
    `${s.durationMs / 1000} s per run${s.quick ? " (quick)" : ""}`;
  const md = `_${caption}_\n\n${markdown(runs, cmp)}`;
  console.log("\n== Markdown\n");
  console.log(md);
  const elapsedS = round((performance.now() - started) / 1000, 1);
  const path = writeResults("grpc", {
    machine: m,
    settings: s,
    seedPlan,
    batchSize,
    runs,
    comparisons: cmp,
    targets,
    markdown: md,
    elapsedS,
    loadAverageAtEnd: round(loadavg()[0] ?? 0, 2),
  });
  console.log(`\ntotal ${elapsedS} s | results in ${path}`);
}

await main();
