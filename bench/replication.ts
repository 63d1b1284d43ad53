// The replication benchmark: what running stockd as a cluster over NATS
// JetStream costs, side by side in one run with the same load and seeding.
//
//   1. ReserveBatch throughput (4 calls of 1,000 reservations in flight,
//      as bench/grpc.ts) and p50/p99 per call: a standalone node in `fsync`
//      mode, then the leader of a two-node cluster in `replicated` mode (a
//      write is answered once fsynced locally and stored by JetStream; the
//      follower applies it). Also the closed-loop maximum of single Reserve
//      calls (128 in flight), whose rate step 2 halves.
//   2. p50/p99 of single Reserve calls, open loop at half that maximum,
//      each mode at half its own maximum (bench/grpc.ts's "reserve-half-rate");
//      then the same over HTTP (POST /v1/reservations): the closed-loop
//      maximum with 64 connections and an evenly paced open loop at half of
//      it (bench/http.ts's), whose load generator costs far less CPU than
//      the grpc-js client, so that its latency is more the servers' own.
//   3. The follower's lag under each replicated load: its /metrics gauges
//      (stockd_replication_lag_ms, stockd_replication_lag_events summed over
//      partitions) sampled every 250 ms, max and p99; after the load, how
//      long until the gauges read 0 and until a marker write made on the
//      leader after the load can be read from the follower.
//   4. Takeover: a closed loop of single Reserve calls on the leader, the
//      leader SIGKILLed, the time until the follower accepts a write (it
//      is probed with writes, refused UNAVAILABLE while it follows); the
//      killed node is started again on its data as a follower between
//      rounds, and the roles swap.
// Servers' CPU per reservation from /proc. Prints the figures and the
// targets they are compared with; writes bench/results/replication-<time>.json.
// Figures are measured and compared with targets, never asserted.
//
//   npm run bench:replication [-- --quick] [-- --nats URL] [-- --nats-size 3]
//     [-- --lease 3s] [-- --takeovers N] [-- --duration S]

import { randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ReserveBatchRequestSchema,
  type ReserveRequest,
  ReserveRequestSchema,
} from "../src/gen/stockd/v1/api_pb.ts";
import { benchArgs } from "./lib/args.ts";
import {
  type GatewaySeed,
  jwtSecret,
  postJson,
  type SeedPlan,
  type Sku,
  seedGateway,
  signTokens,
  type Tokens,
} from "./lib/gateway_seed.ts";
import {
  type GrpcClientKind,
  type GrpcLoadOptions,
  type GrpcLoadResult,
  type GrpcWorkload,
  methodPaths,
  type PhaseMark,
  runGrpcLoadInWorker,
} from "./lib/grpc_load.ts";
import {
  type HttpLoadOptions,
  type HttpLoadResult,
  type HttpWorkload,
  runHttpLoadInWorker,
} from "./lib/http_load.ts";
import {
  countersOf,
  dataRoot,
  killNode,
  type Nats,
  type NodeCounters,
  type NodeSettings,
  openNats,
  type StockdNode,
  startNode,
} from "./lib/replication_nodes.ts";
import {
  type CatchUp,
  catchUp,
  type LagFigures,
  LagSampler,
  type TakeoverRound,
  takeover,
} from "./lib/replication_probe.ts";
import {
  type CpuWindow,
  type Machine,
  machine,
  machineLine,
  multiCpuMeter,
  otherCoresNoticeable,
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
import { grouped, round, type Target, table, target, verdictText } from "./lib/stats.ts";

/** Targets, from the issue. */
const ratioMin = 0.5;
const halfRateP99MsMax = 20;
const takeoverMsMax = 5_000;

/** As bench/grpc.ts (10,000 positions); --quick seeds 1,000 (seeding
 * 10,000 receipts takes 8-12 s per mode on 2 busy cores). */
const seedPlanFull: SeedPlan = {
  warehouseCount: 100,
  uniformProductCount: 100,
  flowProductCount: 0,
  receiptsPerPosition: 1,
};
const seedPlanQuick: SeedPlan = { ...seedPlanFull, warehouseCount: 20, uniformProductCount: 50 };
/** Reservations per ReserveBatch call, and distinct batches sent (as bench/grpc.ts). */
const batchSize = 1000;
const batchBodyCount = 8;
/** How often the follower's /metrics is read during a load. */
const lagSampleMs = 250;
/** How long the follower may take to catch up after a load. */
const catchUpTimeoutMs = 30_000;

const help = `Usage: npm run bench:replication -- [options]

Standalone stockd (fsync) against the leader of a two-node cluster (replicated,
over NATS JetStream), one after the other, same seeding and load; then
takeovers of a killed leader. Needs nats-server (PATH or /usr/sbin), unless
--nats names a running one.

  --quick                 0.7 s warm-up and 2 s per run, 1,000 positions seeded instead
                          of 10,000, 2 takeovers (about 1 minute)
  --duration S            seconds per measured run [10; quick 2]
  --connections N         gRPC channels, each its own HTTP/2 connection [4]
  --in-flight N           single Reserve calls in flight for the maximum [128]
  --batch-in-flight N     ReserveBatch calls in flight, ${batchSize} reservations each [4]
  --http-connections N    HTTP connections of the HTTP steps (as bench:http) [64]
  --client KIND           grpc-js or http2 (bare node:http2 gRPC client) [grpc-js]
  --hold-duration D       the nodes' default hold duration [2s]
  --workers N             the nodes' worker threads [stockd's default]
  --partitions N          partitions of the nodes' new data directories [stockd's default]
  --lease D               the cluster's lease (--lease of stockd serve) [3s]
  --takeovers N           takeover rounds, 0 for none [3; quick 2]
  --nats URL              use this NATS (with JetStream) instead of starting one, e.g.
                          the machine's own: --nats nats://127.0.0.1:4222 (the run's
                          stream, bucket and object store are deleted from it afterwards)
  --nats-size N           nats-servers to start: 1, or 3 for a JetStream cluster
                          (then stockd keeps 3 replicas) [1]`;

interface Settings {
  quick: boolean;
  seedPlan: SeedPlan;
  warmupMs: number;
  durationMs: number;
  channelCount: number;
  inFlight: number;
  batchInFlight: number;
  /** HTTP keep-alive connections of the HTTP steps (as bench:http). */
  httpConnections: number;
  client: GrpcClientKind;
  holdDuration: string;
  workerCount: number | undefined;
  partitionCount: number | undefined;
  lease: string;
  takeovers: number;
  natsUrl: string | undefined;
  natsSize: 1 | 3;
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
        duration: { type: "string" },
        connections: { type: "string" },
        "in-flight": { type: "string" },
        "batch-in-flight": { type: "string" },
        "http-connections": { type: "string" },
        client: { type: "string", default: "grpc-js" },
        "hold-duration": { type: "string", default: "2s" },
        workers: { type: "string" },
        partitions: { type: "string" },
        lease: { type: "string", default: "3s" },
        takeovers: { type: "string" },
        nats: { type: "string" },
        "nats-size": { type: "string", default: "1" },
      },
    }),
  );
  if (values.client !== "grpc-js" && values.client !== "http2") {
    usage("--client is grpc-js or http2");
  }
  if (values["nats-size"] !== "1" && values["nats-size"] !== "3") usage("--nats-size is 1 or 3");
  if (values.nats !== undefined && argv.some((a) => a.startsWith("--nats-size"))) {
    usage("--nats-size starts nats-servers; --nats uses a running NATS: give one of them");
  }
  const quick = values.quick;
  return {
    quick,
    seedPlan: quick ? seedPlanQuick : seedPlanFull,
    warmupMs: quick ? 700 : 2000,
    durationMs: positive("--duration", values.duration, quick ? 2 : 10) * 1000,
    channelCount: count("--connections", values.connections, 4, 1),
    inFlight: count("--in-flight", values["in-flight"], 128, 1),
    httpConnections: count("--http-connections", values["http-connections"], 64, 1),
    batchInFlight: count("--batch-in-flight", values["batch-in-flight"], 4, 1),
    client: values.client as GrpcClientKind,
    holdDuration: values["hold-duration"],
    workerCount:
      values.workers === undefined ? undefined : count("--workers", values.workers, 0, 0),
    partitionCount:
      values.partitions === undefined ? undefined : count("--partitions", values.partitions, 0, 1),
    lease: values.lease,
    takeovers: count("--takeovers", values.takeovers, quick ? 2 : 3, 0),
    natsUrl: values.nats,
    natsSize: values["nats-size"] === "3" ? 3 : 1,
  };
}

const { positive, count, parseOrUsage, usage } = benchArgs(() => help);

// ---- workloads ---------------------------------------------------------------------

type Mode = "fsync" | "replicated";
type Scenario =
  | "batch"
  | "reserve-max"
  | "reserve-half-rate"
  | "http-reserve-max"
  | "http-reserve-half-rate";

/** A step's load: gRPC calls (bench/lib/grpc_load.ts) or HTTP requests
 * (bench/lib/http_load.ts, the same load as bench:http's). */
type Workload = { transport: "grpc"; w: GrpcWorkload } | { transport: "http"; w: HttpWorkload };

interface Workloads {
  batch: GrpcWorkload;
  reserve: GrpcWorkload;
  http: HttpWorkload;
}

function reserveRequest(sku: Sku): ReserveRequest {
  return create(ReserveRequestSchema, { lines: [{ ...sku, quantity: 1n }] });
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

/** Encoded once per run and used by both modes: the same requests. */
function workloads(seed: GatewaySeed, tokens: Tokens): Workloads {
  const batches = Array.from({ length: batchBodyCount }, () =>
    toBinary(
      ReserveBatchRequestSchema,
      create(ReserveBatchRequestSchema, {
        requests: Array.from({ length: batchSize }, () => reserveRequest(pick(seed.uniform))),
      }),
    ),
  );
  return {
    batch: {
      kind: "unary",
      path: methodPaths.reserveBatch,
      bodies: batches,
      token: tokens.service,
      reservationsPerCall: batchSize,
    },
    reserve: {
      kind: "unary",
      path: methodPaths.reserve,
      bodies: seed.uniform.map((sku) => toBinary(ReserveRequestSchema, reserveRequest(sku))),
      token: tokens.service,
      reservationsPerCall: 0,
    },
    http: {
      kind: "reserve",
      bodies: seed.uniform.map((sku) => JSON.stringify({ lines: [{ ...sku, quantity: 1 }] })),
      token: tokens.service,
    },
  };
}

/** An HTTP load's result in the gRPC load's terms: "reserve 201" counts as
 * "Reserve OK", other statuses keep their number, and requests that got
 * no answer count as "no answer". */
function asGrpcLoad(h: HttpLoadResult): GrpcLoadResult {
  const byCode: Record<string, number> = {};
  for (const [k, v] of Object.entries(h.byStatus)) {
    const key = /^reserve 2\d\d$/.test(k) ? "Reserve OK" : k;
    byCode[key] = (byCode[key] ?? 0) + v;
  }
  if (h.errors + h.timeouts > 0) byCode["no answer"] = h.errors + h.timeouts;
  return {
    elapsedMs: h.elapsedMs,
    calls: h.answers,
    byCode,
    errorSamples: h.errorSamples,
    latency: h.latency,
    okLatency: h.okLatency,
    flows: 0,
    flowLatency: h.flowLatency,
    reservationsOk: 0,
    reservationsRefused: 0,
    skipped: h.skipped,
    started: h.answers,
  };
}

// ---- one run -------------------------------------------------------------------------------

interface ProcessCpu {
  name: string;
  cores: number | null;
  usPerReservation: number | null;
}

interface Run {
  mode: Mode;
  scenario: Scenario;
  inFlight: number;
  ratePerS: number | null;
  load: GrpcLoadResult;
  callsPerS: number;
  okPerS: number;
  reservationsPerS: number;
  /** The node answering (stockd alone, or the leader) and, replicated, the
   * follower and the nats-servers started here. */
  cpu: ProcessCpu[];
  /** Every server process above together, per reservation. */
  serversUsPerReservation: number | null;
  loadgenCores: number;
  otherCores: number | null;
  /** The node's journal over the window, from its /metrics (null: not read). */
  journal: JournalFigures | null;
  /** The node's own view of the window (bench/lib/server_view.ts). */
  view: ServerView | null;
  /** Replicated: the follower's gauges during the measured window, and
   * its catching up after the load. */
  lag: LagFigures | null;
  catchUp: CatchUp | null;
}

interface JournalFigures {
  commitsPerS: number;
  eventsPerCommit: number;
  /** Mean time of a commit: the local fsync and, replicated, every
   * JetStream publish of its batches (in parallel), until both are done. */
  commitMsMean: number;
  /** Replicated: JetStream publishes per commit and their mean ack time. */
  publishesPerCommit: number | null;
  publishMsMean: number | null;
}

function journalFigures(a: NodeCounters | null, b: NodeCounters | null, elapsedMs: number) {
  if (a === null || b === null || elapsedMs <= 0) return null;
  const commits = b.commits - a.commits;
  const publishes = b.publishes - a.publishes;
  const per = (x: number, n: number, digits: number) => (n <= 0 ? 0 : round(x / n, digits));
  return {
    commitsPerS: round((commits * 1000) / elapsedMs),
    eventsPerCommit: per(b.events - a.events, commits, 1),
    commitMsMean: per((b.commitSeconds - a.commitSeconds) * 1000, commits, 2),
    publishesPerCommit: publishes <= 0 ? null : per(publishes, commits, 1),
    publishMsMean:
      publishes <= 0 ? null : per((b.publishSeconds - a.publishSeconds) * 1000, publishes, 2),
  };
}

interface Subject {
  mode: Mode;
  /** The node taking the load (stockd alone or the leader). */
  node: StockdNode;
  follower: StockdNode | null;
  nats: Nats;
  marker: Sku;
  tokens: Tokens;
}

async function runOne(
  s: Settings,
  t: Subject,
  scenario: Scenario,
  workload: Workload,
  inFlight: number,
  ratePerS: number | null,
): Promise<Run> {
  const pids: Record<string, number> = {
    [t.mode === "fsync" ? "stockd" : "leader"]: t.node.child.pid,
  };
  if (t.follower !== null) {
    pids.follower = t.follower.child.pid;
    t.nats.pids.forEach((pid, i) => {
      pids[t.nats.pids.length === 1 ? "nats-server" : `nats-server ${i}`] = pid;
    });
  }
  const meter = multiCpuMeter(pids);
  const sampler = t.follower === null ? null : new LagSampler(t.follower, lagSampleMs);
  let loadEndMs = 0;
  let countersBefore: Promise<NodeCounters | null> = Promise.resolve(null);
  let countersAfter: Promise<NodeCounters | null> = Promise.resolve(null);
  let viewAtStart: ReturnType<typeof scrape> = Promise.resolve(null);
  let viewAtEnd: ReturnType<typeof scrape> = Promise.resolve(null);
  const countersAt = { before: 0, after: 0 };
  const onPhase = (mark: PhaseMark) => {
    if (mark === "measure") {
      meter.start();
      if (sampler !== null) sampler.measuring = true;
      countersAt.before = performance.now();
      // One read of /metrics serves both: a scrape restarts the event-loop
      // lag figures, so a second read at once would find them empty.
      viewAtStart = scrape(t.node.httpUrl);
      countersBefore = viewAtStart.then((v) => (v === null ? null : countersOf(v.text)));
    } else {
      meter.stop();
      loadEndMs = performance.now();
      if (sampler !== null) sampler.measuring = false;
      countersAt.after = performance.now();
      viewAtEnd = scrape(t.node.httpUrl);
      countersAfter = viewAtEnd.then((v) => (v === null ? null : countersOf(v.text)));
    }
  };
  sampler?.start();
  let load: GrpcLoadResult;
  try {
    // A worker thread, as bench/grpc.ts and bench/http.ts: the main thread
    // samples the lag.
    if (workload.transport === "grpc") {
      const options: GrpcLoadOptions = {
        address: t.node.grpcAddress,
        channelCount: s.channelCount,
        inFlight,
        warmupMs: s.warmupMs,
        durationMs: s.durationMs,
        ratePerS,
        client: s.client,
        workload: workload.w,
        echoPath: null,
      };
      load = await runGrpcLoadInWorker(options, onPhase);
    } else {
      const options: HttpLoadOptions = {
        url: t.node.httpUrl,
        connections: inFlight,
        warmupMs: s.warmupMs,
        durationMs: s.durationMs,
        ratePerS,
        // Open loop evenly paced, as bench:http's reserve-half-rate.
        pacing: ratePerS === null ? "autocannon" : "even",
        workload: workload.w,
      };
      load = asGrpcLoad(await runHttpLoadInWorker(options, onPhase));
    }
  } finally {
    sampler?.stop();
  }
  const lag = sampler?.figures() ?? null;
  const journal = journalFigures(
    await countersBefore,
    await countersAfter,
    countersAt.after - countersAt.before,
  );
  const view = serverView(
    await viewAtStart,
    await viewAtEnd,
    workload.transport,
    scenario === "batch" ? "ReserveBatch" : "Reserve",
  );
  const caught =
    t.follower === null
      ? null
      : await catchUp(t.node, t.follower, t.marker, t.tokens.admin, loadEndMs, catchUpTimeoutMs);
  const w: CpuWindow = meter.window();
  const perS = (n: number) => (load.elapsedMs <= 0 ? 0 : (n * 1000) / load.elapsedMs);
  const ok = Object.entries(load.byCode)
    .filter(([k]) => k.endsWith(" OK"))
    .reduce((n, [, v]) => n + v, 0);
  const reservations =
    workload.transport === "grpc" &&
    workload.w.kind === "unary" &&
    workload.w.reservationsPerCall > 0
      ? load.reservationsOk
      : ok;
  const cores = (us: number | null) =>
    us === null || w.elapsedMs <= 0 ? null : round(us / 1000 / w.elapsedMs, 2);
  const perReservation = (us: number | null) =>
    us === null || reservations === 0 ? null : round(us / reservations, 2);
  const cpu = Object.entries(w.processUs).map(([name, us]) => ({
    name,
    cores: cores(us),
    usPerReservation: perReservation(us),
  }));
  const all = Object.values(w.processUs);
  return {
    mode: t.mode,
    scenario,
    inFlight,
    ratePerS,
    load,
    callsPerS: round(perS(load.calls)),
    okPerS: round(perS(ok)),
    reservationsPerS: round(perS(reservations)),
    cpu,
    serversUsPerReservation: all.includes(null)
      ? null
      : perReservation(all.reduce((a: number, b) => a + (b ?? 0), 0)),
    loadgenCores: cores(w.loadgenUs) ?? 0,
    otherCores: cores(w.otherUs),
    journal,
    view,
    lag,
    catchUp: caught,
  };
}

/** Step 1 and 2 against one mode: the batch maximum, the single-call
 * maximum, and single calls at half that maximum. */
async function runMode(s: Settings, t: Subject, work: Workloads): Promise<Run[]> {
  const runs: Run[] = [];
  const step = async (scenario: Scenario, w: Workload, inFlight: number, rate: number | null) => {
    const t0 = performance.now();
    const r = await runOne(s, t, scenario, w, inFlight, rate);
    runs.push(r);
    const lag =
      r.lag === null
        ? ""
        : `, follower lag max ${grouped(r.lag.lagMsMax)} ms / ${grouped(r.lag.lagEventsMax)} events` +
          `, caught up ${r.catchUp?.markerVisibleMs ?? "-"} ms after`;
    console.log(
      `  ${t.mode} ${scenario}: ${grouped(r.reservationsPerS)} reservations/s, ${grouped(r.callsPerS)} calls/s, ` +
        `p50 ${ms(r.load.okLatency.p50Ms)} p99 ${ms(r.load.okLatency.p99Ms)} ms${lag} ` +
        `(${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    return r;
  };
  const grpc = (w: GrpcWorkload): Workload => ({ transport: "grpc", w });
  await step("batch", grpc(work.batch), s.batchInFlight, null);
  const max = await step("reserve-max", grpc(work.reserve), s.inFlight, null);
  const rate = Math.max(1, Math.round(max.okPerS / 2));
  // Open loop: many more calls may be in flight than in the closed loop,
  // so that a stall shows as latency, not as a slower sender.
  await step("reserve-half-rate", grpc(work.reserve), s.inFlight * 8, rate);
  // The same over HTTP, whose load generator costs a fraction of grpc-js's
  // client: at half rate its latency is the server's more than the client's.
  const http: Workload = { transport: "http", w: work.http };
  const httpMax = await step("http-reserve-max", http, s.httpConnections, null);
  const httpRate = Math.max(1, Math.round(httpMax.okPerS / 2));
  await step("http-reserve-half-rate", http, s.httpConnections, httpRate);
  return runs;
}

// ---- seeding ---------------------------------------------------------------------------------

async function seed(
  node: StockdNode,
  tokens: Tokens,
  plan: SeedPlan,
): Promise<{ seed: GatewaySeed; marker: Sku }> {
  const t0 = performance.now();
  const g = await seedGateway(node.httpUrl, tokens.admin, plan);
  // A position no load touches: its receipts tell when a follower caught up.
  const product = await postJson(
    node.httpUrl,
    "/v1/products",
    tokens.admin,
    {
      name: "bench marker",
      description: "catch-up marker",
      price: 100,
      currency: "INR",
      category: "marker",
    },
    201,
  );
  const marker = { productId: String(product.id), warehouseId: g.warehouseIds[0]! };
  await postJson(
    node.httpUrl,
    "/v1/inventory/receipts",
    tokens.admin,
    { ...marker, quantity: 1 },
    200,
  );
  console.log(
    `  seeded ${g.warehouseIds.length} warehouses, ${grouped(g.uniform.length + 2)} positions over HTTP in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return { seed: g, marker };
}

// ---- takeovers -------------------------------------------------------------------------------

interface TakeoverResult extends TakeoverRound {
  /** Starting the killed node again on its data until it follows. */
  rejoinMs: number | null;
  /** Then until a marker written on the leader could be read from it. */
  rejoinCaughtUpMs: number | null;
}

async function takeovers(
  s: Settings,
  nodes: [StockdNode, StockdNode],
  nodeSettings: NodeSettings,
  cluster: { nats: string; cluster: string; lease: string },
  seedData: GatewaySeed,
  marker: Sku,
  tokens: Tokens,
): Promise<{ rounds: TakeoverResult[]; nodes: StockdNode[] }> {
  let [leader, follower] = nodes;
  const rounds: TakeoverResult[] = [];
  for (let i = 0; i < s.takeovers; i++) {
    const r = await takeover(
      leader,
      follower,
      {
        serviceToken: tokens.service,
        skus: seedData.uniform,
        loadInFlight: 16,
        loadMs: s.quick ? 1_000 : 2_000,
        probeIntervalMs: 10,
        timeoutMs: 60_000,
      },
      () => process.kill(leader.child.pid, "SIGKILL"),
    );
    await killNode(leader);
    const last = i === s.takeovers - 1 || r.takeoverMs === null;
    let rejoinMs: number | null = null;
    let rejoinCaughtUpMs: number | null = null;
    let restarted: StockdNode | null = null;
    if (!last) {
      // The killed node again, on its own data, as a follower of the new
      // leader, caught up before the next kill (not after the last round).
      const t0 = performance.now();
      restarted = await startNode(leader.name, leader.dataDir, nodeSettings, cluster, "follower");
      rejoinMs = round(performance.now() - t0);
      const c = await catchUp(
        follower,
        restarted,
        marker,
        tokens.admin,
        performance.now(),
        catchUpTimeoutMs,
        false,
      );
      rejoinCaughtUpMs = c.markerVisibleMs;
    }
    rounds.push({ ...r, rejoinMs, rejoinCaughtUpMs });
    console.log(
      `  takeover ${i + 1}: ${r.killed} killed under ${grouped(r.loadOkPerS)} reservations/s, ` +
        `${r.newLeader} accepted a write after ${r.takeoverMs ?? "-"} ms ` +
        `(leases taken at ${r.leasesTakenMs ?? "-"} ms, leading at ${r.leadingMs ?? "-"} ms)` +
        (rejoinMs === null ? "" : `; ${r.killed} following again after ${grouped(rejoinMs)} ms`),
    );
    if (r.takeoverMs === null) {
      console.log("  no write accepted: no further rounds");
      return { rounds, nodes: [follower] };
    }
    if (restarted === null) return { rounds, nodes: [follower] };
    [leader, follower] = [follower, restarted];
  }
  return { rounds, nodes: [leader, follower] };
}

// ---- report ----------------------------------------------------------------------------------

const ms = (x: number) => x.toFixed(2);
const orDash = (x: number | null | undefined, f: (v: number) => string = String) =>
  x === null || x === undefined ? "-" : f(x);

function cpuOf(r: Run, name: string): ProcessCpu | undefined {
  return r.cpu.find((c) => c.name === name);
}

function natsCores(r: Run): number | null {
  const n = r.cpu.filter((c) => c.name.startsWith("nats-server"));
  if (n.length === 0 || n.some((c) => c.cores === null)) return null;
  return round(
    n.reduce((a, c) => a + (c.cores ?? 0), 0),
    2,
  );
}

function printRuns(runs: Run[]): void {
  console.log(
    table(
      [
        "mode",
        "scenario",
        "load",
        "calls/s",
        "reservations/s",
        "p50 ms",
        "p99 ms",
        "node µs/res",
        "servers µs/res",
        "node cores",
        "follower cores",
        "nats cores",
        "loadgen cores",
        "other cores",
      ],
      runs.map((r) => {
        const node = cpuOf(r, r.mode === "fsync" ? "stockd" : "leader");
        return [
          r.mode,
          r.scenario,
          r.ratePerS === null ? `${r.inFlight} in flight` : `${grouped(r.ratePerS)}/s`,
          grouped(r.callsPerS),
          grouped(r.reservationsPerS),
          ms(r.load.okLatency.p50Ms),
          ms(r.load.okLatency.p99Ms),
          orDash(node?.usPerReservation, (v) => v.toFixed(1)),
          orDash(r.serversUsPerReservation, (v) => v.toFixed(1)),
          orDash(node?.cores, (v) => v.toFixed(2)),
          orDash(cpuOf(r, "follower")?.cores, (v) => v.toFixed(2)),
          orDash(natsCores(r), (v) => v.toFixed(2)),
          r.loadgenCores.toFixed(2),
          orDash(r.otherCores, (v) => v.toFixed(2)),
        ];
      }),
    ),
  );
  console.log(
    "(p50/p99 per call, answers with status OK; batch: calls of 1,000 reservations; node: stockd alone\n" +
      " or the leader; servers: node + follower + nats-servers started here; CPU from /proc over the window)",
  );
  for (const r of runs) {
    const other = Object.entries(r.load.byCode).filter(([k]) => !k.endsWith(" OK"));
    if (other.length > 0 || r.load.reservationsRefused > 0 || r.load.skipped > 0) {
      console.log(
        `  ${r.mode} ${r.scenario}: ` +
          [
            ...other.map(([k, v]) => `${k} ${grouped(v)}`),
            ...(r.load.reservationsRefused > 0
              ? [`batch results refused ${grouped(r.load.reservationsRefused)}`]
              : []),
            ...(r.load.skipped > 0
              ? [`sends skipped (in-flight cap) ${grouped(r.load.skipped)}`]
              : []),
          ].join(", "),
      );
      for (const [k, msg] of Object.entries(r.load.errorSamples))
        console.log(`    first ${k}: ${msg}`);
    }
    if (r.otherCores !== null && r.otherCores >= otherCoresNoticeable) {
      console.log(
        `note: ${r.mode} ${r.scenario}: other work on the machine took ${r.otherCores} cores`,
      );
    }
    if (r.loadgenCores >= 0.85) {
      console.log(
        `note: ${r.mode} ${r.scenario}: the load generator used ${r.loadgenCores} cores: it may be the limit`,
      );
    }
  }
}

interface Comparison {
  scenario: Scenario;
  fsync: number;
  replicated: number;
  ratio: number;
}

function compare(runs: Run[]): Comparison[] {
  const out: Comparison[] = [];
  for (const scenario of ["batch", "reserve-max", "http-reserve-max"] as const) {
    const f = runs.find((r) => r.mode === "fsync" && r.scenario === scenario);
    const r = runs.find((x) => x.mode === "replicated" && x.scenario === scenario);
    if (f === undefined || r === undefined) continue;
    out.push({
      scenario,
      fsync: f.reservationsPerS,
      replicated: r.reservationsPerS,
      ratio: f.reservationsPerS > 0 ? round(r.reservationsPerS / f.reservationsPerS, 3) : 0,
    });
  }
  return out;
}

function targetsOf(
  s: Settings,
  runs: Run[],
  cmp: Comparison[],
  rounds: TakeoverResult[],
): Target[] {
  const out: Target[] = [];
  const batch = cmp.find((c) => c.scenario === "batch");
  if (batch !== undefined) {
    out.push(
      target("ReserveBatch reservations/s, replicated/fsync", batch.ratio, "", "atLeast", ratioMin),
    );
  }
  for (const [scenario, name] of [
    ["reserve-half-rate", "gRPC"],
    ["http-reserve-half-rate", "HTTP"],
  ] as const) {
    const half = runs.find((r) => r.mode === "replicated" && r.scenario === scenario);
    if (half === undefined) continue;
    out.push(
      target(
        `replicated: single ${name} Reserve at 50% of its max rate, p99`,
        half.load.okLatency.p99Ms,
        "ms",
        "below",
        halfRateP99MsMax,
      ),
    );
  }
  if (rounds.length > 0) {
    const times = rounds.map((r) => r.takeoverMs ?? Number.POSITIVE_INFINITY);
    out.push(
      target(
        `takeover, kill to first accepted write, max of ${rounds.length} (lease ${s.lease})`,
        Math.max(...times),
        "ms",
        "below",
        takeoverMsMax,
      ),
    );
  }
  return out;
}

function fmtTarget(t: Target): string {
  const bound = t.unit === "" ? String(t.bound) : `${grouped(t.bound)} ${t.unit}`;
  return `${t.verdict} (${t.kind === "atLeast" ? ">=" : "<"} ${bound})`;
}

function report(
  s: Settings,
  m: Machine,
  nats: Nats,
  runs: Run[],
  rounds: TakeoverResult[],
  started: number,
): void {
  console.log("\n== Runs (step 1: closed-loop maxima; step 2: single Reserve at half the maximum)");
  printRuns(runs);

  console.log(
    "\n== The node's journal over each window (its /metrics): where a replicated write spends its time",
  );
  console.log(
    table(
      [
        "mode",
        "scenario",
        "commits/s",
        "events/commit",
        "commit ms mean",
        "publishes/commit",
        "publish ms mean",
      ],
      runs.map((r) => [
        r.mode,
        r.scenario,
        orDash(r.journal?.commitsPerS, grouped),
        orDash(r.journal?.eventsPerCommit, (v) => v.toFixed(1)),
        orDash(r.journal?.commitMsMean, (v) => v.toFixed(2)),
        orDash(r.journal?.publishesPerCommit, (v) => v.toFixed(1)),
        orDash(r.journal?.publishMsMean, (v) => v.toFixed(2)),
      ]),
    ),
  );
  console.log(
    "(a commit: one worker's journal transaction; replicated, it ends when its fsync and every JetStream\n" +
      " publish of its batches (one message per partition touched, partitions in parallel) are done, and a\n" +
      " worker has one commit in flight at a time. publish ms: each message's wait for JetStream's ack)",
  );

  const cmp = compare(runs);
  console.log("\n== Replicated as a fraction of fsync (same seeding, same load, same machine)");
  console.log(
    table(
      [
        "scenario",
        "fsync reservations/s",
        "replicated reservations/s",
        "replicated/fsync",
        "target",
      ],
      cmp.map((c) => [
        c.scenario,
        grouped(c.fsync),
        grouped(c.replicated),
        c.ratio.toFixed(3),
        c.scenario === "batch" ? `>= ${ratioMin}` : "none (reference)",
      ]),
    ),
  );
  console.log(
    `(on this machine the follower and the nats-server share the ${m.cores} cores with the leader and the\n` +
      " load generator: the replicated figures include their CPU; on separate machines they would not)",
  );
  const halves = runs.filter(
    (r) => r.scenario === "reserve-half-rate" || r.scenario === "http-reserve-half-rate",
  );
  if (halves.length > 0) {
    console.log(
      "\n== Single Reserve calls at half the closed-loop maximum of single calls, open loop",
    );
    console.log(
      table(
        [
          "mode",
          "transport",
          "rate",
          "served/s",
          "p50 ms",
          "p99 ms",
          "p99.9 ms",
          "max ms",
          "target p99",
        ],
        halves.map((r) => [
          r.mode,
          r.scenario === "reserve-half-rate" ? "gRPC (grpc-js)" : "HTTP (evenly paced)",
          `${grouped(r.ratePerS ?? 0)}/s`,
          grouped(r.okPerS),
          ms(r.load.okLatency.p50Ms),
          ms(r.load.okLatency.p99Ms),
          ms(r.load.okLatency.p999Ms),
          ms(r.load.okLatency.maxMs),
          r.mode === "replicated" ? `< ${halfRateP99MsMax} ms` : "none (reference)",
        ]),
      ),
    );
    const batch = runs.find((r) => r.mode === "replicated" && r.scenario === "batch");
    const max = runs.find((r) => r.mode === "replicated" && r.scenario === "reserve-max");
    if (batch !== undefined && max !== undefined) {
      console.log(
        `(half of ReserveBatch's rate would be ${grouped(batch.reservationsPerS / 2)} single calls/s, far above the ` +
          `${grouped(max.okPerS)}/s single calls reach:\n the rate halved is the single-call maximum, as bench/grpc.ts does;\n` +
          " HTTP: half of the HTTP closed-loop maximum (64 connections), as bench/http.ts does)",
      );
    }
  }

  const viewed = runs.filter((r) => r.view !== null);
  if (viewed.length > 0) {
    console.log(
      "\n== The answering node's own view of each window (its /metrics at the window's start and end)",
    );
    console.log(
      table(
        ["mode", "scenario", ...viewHeaders],
        viewed.map((r) => [r.mode, r.scenario, ...viewCells(r.load.okLatency.p99Ms, r.view!)]),
      ),
    );
    console.log(viewNote("the call (gRPC Reserve or ReserveBatch, HTTP POST /v1/reservations)"));
  }

  const lagRuns = runs.filter((r) => r.lag !== null);
  if (lagRuns.length > 0) {
    console.log(
      `\n== Follower lag under the replicated loads (its /metrics every ${lagSampleMs} ms during the measured window)`,
    );
    console.log(
      table(
        [
          "scenario",
          "samples",
          "lag ms max",
          "lag ms p99",
          "lag events max",
          "lag events p99",
          "gauges 0 after",
          "marker read after",
        ],
        lagRuns.map((r) => [
          r.scenario,
          `${r.lag!.samples}${r.lag!.missed > 0 ? ` (${r.lag!.missed} missed)` : ""}`,
          grouped(r.lag!.lagMsMax),
          grouped(r.lag!.lagMsP99),
          grouped(r.lag!.lagEventsMax),
          grouped(r.lag!.lagEventsP99),
          orDash(r.catchUp?.gaugesZeroMs, (v) => `${grouped(v)} ms`),
          orDash(r.catchUp?.markerVisibleMs, (v) => `${grouped(v)} ms`),
        ]),
      ),
    );
    console.log(
      '(no target. lag events: summed over partitions. "after": from the end of the load; the marker is a\n' +
        " receipt written on the leader after the load, read back from the follower (its write is included).\n" +
        ` The follower updates its gauges on its cluster tick, every lease/4 (${s.lease}/4): between ticks a\n` +
        " sample repeats the last value, so the gauges' resolution is that tick, not the sampling interval.)",
    );
  }

  if (rounds.length > 0) {
    console.log(
      `\n== Takeover: leader SIGKILLed under load, lease ${s.lease}, NATS ${nats.description}`,
    );
    console.log(
      table(
        [
          "round",
          "killed",
          "new leader",
          "load before kill",
          "kill -> first write",
          "leases taken",
          "leading",
          "logged takeover",
          "probes refused",
          "rejoin as follower",
        ],
        rounds.map((r, i) => [
          String(i + 1),
          r.killed,
          r.newLeader,
          `${grouped(r.loadOkPerS)}/s`,
          orDash(r.takeoverMs, (v) => `${grouped(v)} ms`),
          orDash(r.leasesTakenMs, (v) => `${grouped(v)} ms`),
          orDash(r.leadingMs, (v) => `${grouped(v)} ms`),
          orDash(r.takeoverLoggedMs, (v) => `${grouped(v)} ms`),
          grouped(Object.values(r.refusedAfterKill).reduce((a, b) => a + b, 0)),
          orDash(r.rejoinMs, (v) => `${grouped(v)} ms`),
        ]),
      ),
    );
    const times = rounds.map((r) => r.takeoverMs ?? Number.POSITIVE_INFINITY);
    console.log(
      `max ${Number.isFinite(Math.max(...times)) ? `${grouped(Math.max(...times))} ms` : "(a round saw no accepted write)"}` +
        ` (target < ${grouped(takeoverMsMax)} ms with --lease ${s.lease})`,
    );
    console.log(
      "(leases taken / leading: the new leader's log lines, from the kill; logged takeover: its own\n" +
        ' "leading" ms, leases taken until leading; probes: one Reserve at a time on the follower, 10 ms apart)',
    );
    for (const [i, r] of rounds.entries()) {
      const steps = r.newLeaderLog
        .map((l) => {
          const replayed = l.detail?.eventsReplayed;
          return `${grouped(l.sinceKillMs)} ${l.msg}${typeof replayed === "number" ? ` (${grouped(replayed)} events replayed)` : ""}`;
        })
        .join(" | ");
      console.log(`  round ${i + 1}, ${r.newLeader}'s log after the kill (ms): ${steps || "-"}`);
      const odd = Object.entries(r.unexpectedBeforeKill);
      if (odd.length > 0) {
        console.log(
          `note: round ${i + 1}: the follower answered writes before the kill with ${odd.map(([k, v]) => `${k} ${v}`).join(", ")} (expected UNAVAILABLE)`,
        );
      }
    }
  }

  const targets = targetsOf(s, runs, cmp, rounds);
  console.log("\n== Targets");
  console.log(
    table(
      ["figure", "measured", "target"],
      targets.map((t) => [
        t.name,
        `${Number.isFinite(t.value) ? round(t.value, t.unit === "" ? 3 : 1) : "none"}${t.unit === "" ? "" : ` ${t.unit}`}`,
        fmtTarget(t),
      ]),
    ),
  );
  const elapsedS = round((performance.now() - started) / 1000, 1);
  const path = writeResults("replication", {
    machine: m,
    settings: s,
    nats: nats.description,
    seedPlan: s.seedPlan,
    batchSize,
    runs,
    comparisons: cmp,
    takeovers: rounds,
    targets: targets.map((t) => ({ ...t, verdictText: verdictText(t) })),
    elapsedS,
    loadAverageAtEnd: round(loadavg()[0] ?? 0, 2),
  });
  console.log(`\ntotal ${elapsedS} s | results in ${path}`);
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  const m = machine();
  const started = performance.now();
  console.log("stockd replication benchmark: standalone fsync against a replicated leader");
  console.log(machineLine(m));
  console.log(
    `${s.quick ? "quick" : "full"} run | ${s.durationMs / 1000} s per run after ${s.warmupMs / 1000} s warm-up | ` +
      `${s.channelCount} channels | ReserveBatch ${s.batchInFlight} x ${grouped(batchSize)} in flight | ` +
      `Reserve ${s.inFlight} in flight | hold ${s.holdDuration} | lease ${s.lease} | ${s.client} client`,
  );
  const secret = jwtSecret();
  const tokens = await signTokens(secret, 0);
  const nodeSettings: NodeSettings = {
    jwtSecret: secret,
    holdDuration: s.holdDuration,
    workerCount: s.workerCount,
    partitionCount: s.partitionCount,
  };
  const nats = await openNats(s.natsUrl, s.natsSize);
  console.log(`NATS: ${nats.description}`);
  const root = dataRoot();
  const clusterName = `bench_${randomBytes(4).toString("hex")}`;
  const live: StockdNode[] = [];
  const runs: Run[] = [];
  let rounds: TakeoverResult[] = [];
  try {
    // ---- standalone, fsync
    console.log("\nfsync: one node alone");
    const t00 = performance.now();
    const alone = await startNode("standalone", root.dir("standalone"), nodeSettings, null, null);
    live.push(alone);
    console.log(`  ready (${((performance.now() - t00) / 1000).toFixed(1)} s)`);
    const a = await seed(alone, tokens, s.seedPlan);
    // The same plan and load for both modes; the ids are each node's own,
    // so the request bodies are encoded per mode.
    const fsyncRuns = await runMode(
      s,
      { mode: "fsync", node: alone, follower: null, nats, marker: a.marker, tokens },
      workloads(a.seed, tokens),
    );
    runs.push(...fsyncRuns);
    await alone.child.stop();
    live.splice(live.indexOf(alone), 1);

    // ---- cluster, replicated
    console.log(`\nreplicated: cluster ${clusterName}, leader and one follower`);
    const cluster = { nats: nats.url, cluster: clusterName, lease: s.lease };
    const t0 = performance.now();
    const leader = await startNode("node-a", root.dir("node-a"), nodeSettings, cluster, "leader");
    live.push(leader);
    const follower = await startNode(
      "node-b",
      root.dir("node-b"),
      nodeSettings,
      cluster,
      "follower",
    );
    live.push(follower);
    console.log(
      `  ${leader.name} leads, ${follower.name} follows (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    const b = await seed(leader, tokens, s.seedPlan);
    const subject: Subject = {
      mode: "replicated",
      node: leader,
      follower,
      nats,
      marker: b.marker,
      tokens,
    };
    // The follower must hold the seed before the load starts.
    await catchUp(
      leader,
      follower,
      b.marker,
      tokens.admin,
      performance.now(),
      catchUpTimeoutMs,
      false,
    );
    runs.push(...(await runMode(s, subject, workloads(b.seed, tokens))));

    // ---- takeovers
    if (s.takeovers > 0) {
      console.log(`\ntakeovers: leader SIGKILLed under load, lease ${s.lease}`);
      const done = await takeovers(
        s,
        [leader, follower],
        nodeSettings,
        cluster,
        b.seed,
        b.marker,
        tokens,
      );
      rounds = done.rounds;
      live.splice(0, live.length, ...done.nodes);
    }
  } catch (err) {
    for (const n of live)
      console.error(`${n.name}'s last log lines:\n  ${n.child.logTail().join("\n  ")}`);
    throw err;
  } finally {
    // The follower first: a leader stopping cleanly hands its leases over.
    for (const n of [...live].reverse()) await n.child.stop();
    await nats
      .stop([clusterName])
      .catch((err: Error) => console.error(`NATS clean-up: ${err.message}`));
    root.remove();
  }
  report(s, m, nats, runs, rounds, started);
}

await main();
