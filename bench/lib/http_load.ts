// The HTTP load generator of the benchmarks (bench:http, bench:replication):
// autocannon for closed loops and its own bursty open loop, or an evenly
// paced open loop of raw keep-alive requests (runEvenRate). It runs in the
// caller's thread (runLoad) or in a worker thread of its own
// (runHttpLoadInWorker, entered through worker_entry.mjs), and reports
// answers by status and latency histograms; it never asserts a figure.

import { connect, type Socket } from "node:net";
import autocannon from "autocannon";
import { parseAnswer } from "./http_answer.ts";
import { type PhaseMark, runInWorker, serveInWorker } from "./load_worker.ts";
import { LatencyHistogram, type LatencySummary } from "./stats.ts";

/** Seconds autocannon waits for an answer before it counts a timeout. */
const requestTimeoutS = 10;

export type HttpWorkload =
  /** POST /v1/reservations with one of `bodies` at random (one body: the
   * same request every time, built once). */
  | { kind: "reserve"; bodies: string[]; token: string }
  /** Set a cart item, check out, pay; one customer per flow in flight. */
  | { kind: "flow"; customerTokens: string[]; serviceToken: string; productIds: string[] };

export interface HttpLoadOptions {
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

export interface HttpLoadResult {
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
        const a = parseAnswer(c.buf, false);
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
export function runLoad(
  o: HttpLoadOptions,
  onPhase: (mark: PhaseMark) => void,
): Promise<HttpLoadResult> {
  return o.pacing === "even" ? runEvenRate(o, onPhase) : runHttpLoad(o, onPhase);
}

/** Runs the load in a worker thread of its own: the calling thread only
 * hears the phase marks and the result. */
export function runHttpLoadInWorker(
  o: HttpLoadOptions,
  onPhase: (mark: PhaseMark) => void,
): Promise<HttpLoadResult> {
  return runInWorker(import.meta.url, "httpLoad", o, onPhase);
}

serveInWorker("httpLoad", runLoad);
