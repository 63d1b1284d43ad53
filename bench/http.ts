// The HTTP gateway benchmark: stockd (`bin/stockd.js serve`, a child
// process) and a bare node:http echo server (another child) driven by the
// same autocannon load with the same connections and duration. Prints
// requests/s, p50/p99, the server's CPU per request and every answer by
// status (2xx, 409, 429 and the rest apart: an answer is not a success);
// stockd's throughput as a fraction of the echo's; a markdown table; writes
// bench/results/http-<time>.json. Figures are never asserted.
//
//   npm run bench:http [-- --quick] [-- --only reserve-hot,flow] [-- --duration S]
//     [-- --connections N] [-- --durability relaxed] [-- --loadgen worker|inline]
//     [-- --echo-only]
//
// autocannon runs in a worker thread of this process (this same module,
// entered through bench/lib/worker_entry.mjs), or with --loadgen inline in
// the main thread.

import { connect, type Socket } from "node:net";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import autocannon from "autocannon";
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
  LatencyHistogram,
  type LatencySummary,
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
/** Seconds autocannon waits for an answer before it counts a timeout. */
const requestTimeoutS = 10;

// ---- the load (main thread or worker) ---------------------------------------------

type HttpWorkload =
  /** POST /v1/reservations with one of `bodies` at random (one body: the
   * same request every time, built once). */
  | { kind: "reserve"; bodies: string[]; token: string }
  /** Set a cart item, check out, pay; one customer per flow in flight. */
  | { kind: "flow"; customerTokens: string[]; serviceToken: string; productIds: string[] };

interface HttpLoadOptions {
  url: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  /** null: closed loop; else requests started per second, by autocannon's
   * overallRate or evenly spaced (see runEvenRate). */
  ratePerS: number | null;
  pacing: "autocannon" | "even";
  workload: HttpWorkload;
}

interface HttpLoadResult {
  elapsedMs: number;
  /** Answers in the measured run, of every status. */
  answers: number;
  /** "<step> <HTTP status>" -> answers. */
  byStatus: Record<string, number>;
  /** "<step> <status>" -> the first body seen with it (non-2xx). */
  errorSamples: Record<string, string>;
  /** Connection errors and timeouts (no answer at all). */
  errors: number;
  timeouts: number;
  /** Even pacing: requests skipped because the queue was full. */
  skipped: number;
  latency: LatencySummary;
  /** 2xx answers only. */
  okLatency: LatencySummary;
  flows: number;
  flowLatency: LatencySummary;
}

type PhaseMark = "measure" | "drain";

class Tally {
  readonly byStatus: Record<string, number> = {};
  readonly errorSamples: Record<string, string> = {};
  readonly latency = new LatencyHistogram();
  readonly okLatency = new LatencyHistogram();
  readonly flowLatency = new LatencyHistogram();
  flows = 0;

  status(step: string, status: number, body: string): void {
    const key = `${step} ${status}`;
    this.byStatus[key] = (this.byStatus[key] ?? 0) + 1;
    if ((status < 200 || status > 299) && this.errorSamples[key] === undefined) {
      this.errorSamples[key] = body.slice(0, 300);
    }
  }
}

/** A step succeeded: the counts by status show whether it was the
 * documented 200 or 201. */
function is2xx(status: number): boolean {
  return status >= 200 && status <= 299;
}

interface FlowContext {
  customer?: string | undefined;
  cartId?: string | undefined;
  orderId?: string | undefined;
  startMs?: number;
}

function reserveRequests(w: Extract<HttpWorkload, { kind: "reserve" }>, tally: () => Tally) {
  const headers = { "content-type": "application/json", authorization: `Bearer ${w.token}` };
  const onResponse = (status: number, body: string) => tally().status("reserve", status, body);
  const request: autocannon.Request = { method: "POST", path: "/v1/reservations", headers };
  if (w.bodies.length === 1) return [{ ...request, body: w.bodies[0]!, onResponse }];
  const bodies = w.bodies;
  return [
    {
      ...request,
      setupRequest: (req: autocannon.Request) => ({
        ...req,
        body: bodies[Math.floor(Math.random() * bodies.length)]!,
      }),
      onResponse,
    },
  ];
}

/** The three requests of a flow. A failed step gives its customer back
 * and makes the next step's setup answer null: autocannon then starts the
 * sequence again from its first request. */
function flowRequests(
  w: Extract<HttpWorkload, { kind: "flow" }>,
  free: string[],
  tally: () => Tally,
  measuring: () => boolean,
): autocannon.Request[] {
  const service = `Bearer ${w.serviceToken}`;
  let paymentSeq = 0;
  const release = (ctx: FlowContext) => {
    if (ctx.customer !== undefined) free.unshift(ctx.customer);
    ctx.customer = undefined;
  };
  const idOf = (body: string) => {
    try {
      const id = (JSON.parse(body) as { id?: unknown }).id;
      return typeof id === "string" ? id : undefined;
    } catch {
      return undefined;
    }
  };
  const json = "application/json";
  return [
    {
      method: "POST",
      path: "/v1/cart/items",
      setupRequest: (req, context) => {
        const ctx = context as FlowContext;
        // More customers than connections, each given back on every path;
        // should the pool run dry, customer 0 is shared and the conflicts
        // (CART_LOCKED) show in the counts.
        ctx.customer = free.pop() ?? `Bearer ${w.customerTokens[0]}`;
        ctx.startMs = performance.now();
        const productId = w.productIds[Math.floor(Math.random() * w.productIds.length)];
        return {
          ...req,
          headers: { "content-type": json, authorization: ctx.customer },
          body: JSON.stringify({ productId, quantity: 1 }),
        };
      },
      onResponse: (status, body, context) => {
        const ctx = context as FlowContext;
        tally().status("cart-item", status, body);
        if (is2xx(status)) ctx.cartId = idOf(body);
        if (ctx.cartId === undefined) release(ctx);
      },
    },
    {
      method: "POST",
      setupRequest: (req, context) => {
        const ctx = context as FlowContext;
        if (ctx.cartId === undefined || ctx.customer === undefined) return null as never;
        return {
          ...req,
          path: `/v1/checkout?cartId=${encodeURIComponent(ctx.cartId)}`,
          headers: { authorization: ctx.customer },
        };
      },
      onResponse: (status, body, context) => {
        const ctx = context as FlowContext;
        tally().status("checkout", status, body);
        if (is2xx(status)) ctx.orderId = idOf(body);
        if (ctx.orderId === undefined) release(ctx);
      },
    },
    {
      method: "POST",
      setupRequest: (req, context) => {
        const ctx = context as FlowContext;
        if (ctx.orderId === undefined) return null as never;
        return {
          ...req,
          path: `/v1/orders/${encodeURIComponent(ctx.orderId)}/payment`,
          headers: { "content-type": json, authorization: service },
          body: JSON.stringify({ status: "SUCCEEDED", paymentId: `bench-pay-${++paymentSeq}` }),
        };
      },
      onResponse: (status, body, context) => {
        const ctx = context as FlowContext;
        const t = tally();
        t.status("payment", status, body);
        if (is2xx(status) && measuring()) {
          t.flows++;
          t.flowLatency.recordMs(performance.now() - (ctx.startMs ?? 0));
        }
        release(ctx);
      },
    },
  ];
}

function cannon(
  o: HttpLoadOptions,
  durationMs: number,
  customers: string[],
  tally: () => Tally,
  measuring: () => boolean,
): Promise<{ elapsedMs: number; result: autocannon.Result }> {
  const w = o.workload;
  const requests =
    w.kind === "reserve" ? reserveRequests(w, tally) : flowRequests(w, customers, tally, measuring);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: o.url,
        connections: o.connections,
        duration: durationMs / 1000,
        timeout: requestTimeoutS,
        requests,
        ...(o.ratePerS === null ? {} : { overallRate: o.ratePerS }),
      },
      (err, result) => (err ? reject(err) : resolve({ elapsedMs: performance.now() - t0, result })),
    );
    instance.on("response", (_client, statusCode, _bytes, responseTimeMs) => {
      const t = tally();
      t.latency.recordMs(responseTimeMs);
      if (statusCode >= 200 && statusCode <= 299) t.okLatency.recordMs(responseTimeMs);
    });
  });
}

/** A warm-up run, then the measured one; `onPhase` hears when it starts
 * and ends. */
async function runHttpLoad(
  o: HttpLoadOptions,
  onPhase: (mark: PhaseMark) => void,
): Promise<HttpLoadResult> {
  let tally = new Tally();
  let measuring = false;
  // Free customers, shared by both runs: a flow cut off when the warm-up
  // stops leaves its customer out, whose cart may hold an order awaiting
  // payment (CART_LOCKED until it expires).
  const customers =
    o.workload.kind === "flow" ? o.workload.customerTokens.map((t) => `Bearer ${t}`) : [];
  await cannon(
    o,
    o.warmupMs,
    customers,
    () => tally,
    () => measuring,
  );
  tally = new Tally();
  measuring = true;
  onPhase("measure");
  const { elapsedMs, result } = await cannon(
    o,
    o.durationMs,
    customers,
    () => tally,
    () => measuring,
  );
  onPhase("drain");
  measuring = false;
  return {
    elapsedMs,
    answers: tally.latency.count,
    byStatus: tally.byStatus,
    errorSamples: tally.errorSamples,
    errors: result.errors - result.timeouts,
    timeouts: result.timeouts,
    skipped: 0,
    latency: tally.latency.summaryMs(),
    okLatency: tally.okLatency.summaryMs(),
    flows: tally.flows,
    flowLatency: tally.flowLatency.summaryMs(),
  };
}

// ---- an evenly paced open loop ----------------------------------------------------------
//
// autocannon's overallRate gives each connection a quota per second, which
// it sends back to back from the start of each second: at half the maximum
// rate the server sees its maximum rate half of the time and nothing the
// other half. This sender starts requests evenly spaced instead, on keep-
// alive connections of its own (one request at a time on each, answers
// framed by content-length); a request that finds every connection busy
// waits in a queue, and its latency counts from when the sender found it
// due (see tick).

/** How often the sender looks at the clock (sends come in bursts of at most
 * rate/1000). */
const evenTickMs = 1;
/** Requests waiting for a connection; beyond, a due request is skipped. */
const evenQueueMax = 100_000;
/** How long the drain waits for answers still outstanding. */
const evenDrainMsMax = 10_000;

interface EvenConn {
  socket: Socket;
  busy: boolean;
  dueMs: number;
  buf: Buffer | null;
}

function rawRequests(o: HttpLoadOptions, w: Extract<HttpWorkload, { kind: "reserve" }>): Buffer[] {
  const host = new URL(o.url).host;
  return w.bodies.map((body) =>
    Buffer.from(
      `POST /v1/reservations HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\n` +
        `authorization: Bearer ${w.token}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    ),
  );
}

/** One whole answer at the head of `buf`: its status, body and length, or
 * null while incomplete. Throws on an answer without content-length. */
function parseAnswer(buf: Buffer): { status: number; body: string; bytes: number } | null {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return null;
  const head = buf.toString("latin1", 0, headEnd);
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (length === null) throw new Error(`an answer without content-length: ${head.slice(0, 200)}`);
  const bytes = headEnd + 4 + Number(length[1]);
  if (buf.length < bytes) return null;
  const status = Number(head.slice(9, 12));
  return { status, body: is2xx(status) ? "" : buf.toString("utf8", headEnd + 4, bytes), bytes };
}

async function runEvenRate(
  o: HttpLoadOptions,
  onPhase: (mark: PhaseMark) => void,
): Promise<HttpLoadResult> {
  const w = o.workload;
  if (w.kind !== "reserve" || o.ratePerS === null)
    throw new Error("even pacing: reserve at a rate");
  const requests = rawRequests(o, w);
  const { hostname, port } = new URL(o.url);
  let tally = new Tally();
  let measuring = false;
  let errors = 0;
  let outstanding = 0;
  let skipped = 0;
  const queue: number[] = [];
  let queueHead = 0;
  const idle: EvenConn[] = [];
  const send = (c: EvenConn, dueMs: number) => {
    c.busy = true;
    c.dueMs = dueMs;
    outstanding++;
    c.socket.write(requests[Math.floor(Math.random() * requests.length)]!);
  };
  const release = (c: EvenConn) => {
    c.busy = false;
    if (queueHead < queue.length) send(c, queue[queueHead++]!);
    else idle.push(c);
    if (queueHead === queue.length) queue.length = queueHead = 0;
  };
  const answered = (c: EvenConn, status: number, body: string) => {
    outstanding--;
    if (measuring) {
      const latencyMs = performance.now() - c.dueMs;
      tally.status("reserve", status, body);
      tally.latency.recordMs(latencyMs);
      if (is2xx(status)) tally.okLatency.recordMs(latencyMs);
    }
    release(c);
  };
  const open = (c: EvenConn) =>
    new Promise<void>((resolve) => {
      const socket = connect({ host: hostname, port: Number(port), noDelay: true }, resolve);
      c.socket = socket;
      socket.on("data", (chunk: Buffer) => {
        c.buf = c.buf === null ? chunk : Buffer.concat([c.buf, chunk]);
        const a = parseAnswer(c.buf);
        if (a === null) return;
        c.buf = a.bytes === c.buf.length ? null : c.buf.subarray(a.bytes);
        answered(c, a.status, a.body);
      });
      socket.on("error", () => {});
      socket.on("close", () => {
        if (stopping) return;
        // An answer outstanding is lost: count it, and carry on on a new
        // connection (an idle one stays in `idle`; writes wait for connect).
        const wasBusy = c.busy;
        if (wasBusy) {
          outstanding--;
          if (measuring) errors++;
        }
        c.buf = null;
        void open(c).then(() => {
          if (wasBusy) release(c);
        });
      });
    });
  let stopping = false;
  const conns = Array.from(
    { length: o.connections },
    (): EvenConn => ({ socket: null as never, busy: false, dueMs: 0, buf: null }),
  );
  await Promise.all(conns.map(open));
  idle.push(...conns);
  const t0 = performance.now();
  const intervalMs = 1000 / o.ratePerS;
  let sent = 0;
  let timer: NodeJS.Timeout | null = null;
  const tick = () => {
    // Latency counts from this look at the clock, not from when each
    // request fell due: the timer's own lateness is the sender's, while a
    // wait for a busy connection is the server's and is counted.
    const dueMs = performance.now();
    const due = Math.floor((dueMs - t0) / intervalMs);
    for (; sent < due; sent++) {
      const c = idle.pop();
      if (c !== undefined) send(c, dueMs);
      else if (queue.length - queueHead < evenQueueMax) queue.push(dueMs);
      else if (measuring) skipped++;
    }
    timer = setTimeout(tick, evenTickMs);
  };
  tick();
  await sleep(o.warmupMs);
  tally = new Tally();
  measuring = true;
  onPhase("measure");
  const m0 = performance.now();
  await sleep(o.durationMs);
  const elapsedMs = performance.now() - m0;
  onPhase("drain");
  measuring = false;
  if (timer !== null) clearTimeout(timer);
  queue.length = queueHead = 0;
  for (let waited = 0; outstanding > 0 && waited < evenDrainMsMax; waited += 10) await sleep(10);
  stopping = true;
  for (const c of conns) c.socket.destroy();
  return {
    elapsedMs,
    answers: tally.latency.count,
    byStatus: tally.byStatus,
    errorSamples: tally.errorSamples,
    errors,
    timeouts: 0,
    skipped,
    latency: tally.latency.summaryMs(),
    okLatency: tally.okLatency.summaryMs(),
    flows: 0,
    flowLatency: tally.flowLatency.summaryMs(),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The load as the options ask: autocannon, or the even-paced sender. */
function runLoad(o: HttpLoadOptions, onPhase: (mark: PhaseMark) => void): Promise<HttpLoadResult> {
  return o.pacing === "even" ? runEvenRate(o, onPhase) : runHttpLoad(o, onPhase);
}

interface LoadWorkerData {
  module: string;
  httpLoad: HttpLoadOptions;
}

type FromLoadWorker =
  | { t: "phase"; mark: PhaseMark }
  | { t: "done"; result: HttpLoadResult }
  | { t: "failed"; message: string };

function runHttpLoadInWorker(
  o: HttpLoadOptions,
  onPhase: (mark: PhaseMark) => void,
): Promise<HttpLoadResult> {
  const entry = new URL("./lib/worker_entry.mjs", import.meta.url);
  const data: LoadWorkerData = { module: import.meta.url, httpLoad: o };
  return new Promise((resolve, reject) => {
    const worker = new Worker(entry, { workerData: data });
    worker.on("error", reject);
    worker.on("message", (msg: FromLoadWorker) => {
      if (msg.t === "phase") {
        onPhase(msg.mark);
        return;
      }
      if (msg.t === "failed") reject(new Error(`load generator: ${msg.message}`));
      else resolve(msg.result);
      void worker.terminate();
    });
    worker.on("exit", (code) =>
      reject(new Error(`load generator worker exited (${code}) without a result`)),
    );
  });
}

function serveAsWorker(): void {
  const port = parentPort!;
  const data = workerData as LoadWorkerData;
  runLoad(data.httpLoad, (mark) => port.postMessage({ t: "phase", mark } satisfies FromLoadWorker))
    .then((result) => port.postMessage({ t: "done", result } satisfies FromLoadWorker))
    .catch((err: unknown) =>
      port.postMessage({ t: "failed", message: (err as Error).message } satisfies FromLoadWorker),
    );
}

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

interface Run {
  scenario: ScenarioName;
  server: "stockd" | "echo";
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
  isEcho: boolean,
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
      if (!isEcho) atStart = scrape(url);
    } else {
      meter.stop();
      if (!isEcho) atEnd = scrape(url);
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
    server: isEcho ? "echo" : "stockd",
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

function markdown(runs: Run[], cmp: Comparison[]): string {
  const lines = [
    "| scenario | server | load | req/s | throughput | vs echo | p50 ms | p99 ms | 2xx / 409 / 429 / other | server CPU µs/req |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
  ];
  for (const r of runs) {
    const c = r.server === "stockd" ? cmp.find((x) => x.scenario === r.scenario) : undefined;
    const load = loadText(r);
    const other = r.counts.otherClient + r.counts.server + r.load.errors + r.load.timeouts;
    lines.push(
      `| ${r.scenario} | ${r.server} | ${load} | ${grouped(r.answersPerS)} | ${headline(r)} | ` +
        `${c === undefined || r.ratePerS !== null ? "" : `${(c.fraction * 100).toFixed(0)}%`} | ` +
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
    for (const server of stockd === null ? [echo] : [echo, stockd]) {
      const t0 = performance.now();
      const r = await runOne(s, name, server, server === echo, workload, rate);
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
  const md = `_${caption}_\n\n${markdown(runs, cmp)}`;
  console.log("\n== Markdown\n");
  console.log(md);
  const elapsedS = round((performance.now() - started) / 1000, 1);
  const path = writeResults("http", {
    machine: m,
    settings: s,
    seedPlan,
    runs,
    comparisons: cmp,
    targets,
    markdown: md,
    elapsedS,
    loadAverageAtEnd: round(loadavg()[0] ?? 0, 2),
  });
  console.log(`\ntotal ${elapsedS} s | results in ${path}`);
}

if (isMainThread) await main();
else if ((workerData as Partial<LoadWorkerData> | null)?.httpLoad !== undefined) serveAsWorker();
