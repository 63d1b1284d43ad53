// The gRPC load generator of the gateway benchmark. It keeps many unary
// calls in flight over several channels (each its own HTTP/2 connection),
// closed-loop (a call ends, the next starts) or open-loop at a fixed rate
// (calls start on a schedule whatever came back, so a server that stalls
// meets the calls that piled up meanwhile). Request bytes are encoded once, up
// front; only the checkout flow encodes per call, because each step needs an
// id from the answer before.
//
// Two clients: grpc-js (`makeUnaryRequest` with identity serializers, each
// channel with `grpc.use_local_subchannel_pool` so it is a connection of its
// own), and a bare one on node:http2 that frames the gRPC messages itself
// and costs the load generator less than half the CPU per call, which on a
// small machine is CPU the server gets instead.
//
// It runs in a worker thread (runGrpcLoadInWorker) or in the caller's
// thread (runGrpcLoad). Phases: warm-up, measure, drain; the caller hears
// when measuring starts and ends, to read CPU counters at those moments.

import { once } from "node:events";
import { type ClientHttp2Session, connect, constants as h2 } from "node:http2";
import { connect as netConnect } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, status as grpcStatus, Metadata } from "@grpc/grpc-js";
import {
  CheckoutRequestSchema,
  CheckoutResponseSchema,
  PaymentStatus,
  RecordPaymentRequestSchema,
  SetCartItemRequestSchema,
  SetCartItemResponseSchema,
} from "../../src/gen/stockd/v1/api_pb.ts";
import { type PhaseMark, runInWorker, serveInWorker } from "./load_worker.ts";
import { LatencyHistogram, type LatencySummary } from "./stats.ts";

export type { PhaseMark };

/** Bytes in one answer: a ReserveBatch of 10,000 answers is a few MB. */
const messageBytesMax = 16 * 1024 * 1024;
/** How often the fixed-rate sender looks at the clock; between looks it
 * sends what fell due, so sends come in bursts of rate/1000 at most. */
const rateTickMs = 1;
/** How long the drain waits for calls still in flight after measuring. No
 * call has a deadline of its own: grpc-js arms a timer per deadline, which
 * costs the load generator about a fifth of its CPU per call. */
const drainMsMax = 10_000;
/** How long a channel may take to connect. */
const connectMsMax = 10_000;

export const methodPaths = {
  reserve: "/stockd.v1.ReservationService/Reserve",
  reserveBatch: "/stockd.v1.ReservationService/ReserveBatch",
  setCartItem: "/stockd.v1.CartService/SetCartItem",
  checkout: "/stockd.v1.OrderService/Checkout",
  recordPayment: "/stockd.v1.OrderService/RecordPayment",
} as const;

export type GrpcClientKind = "grpc-js" | "http2";

export type GrpcWorkload =
  /** One method, each call with one of `bodies` picked at random.
   * `reservationsPerCall` > 0: the answers are ReserveBatchResponses and
   * each result in them is counted. */
  | {
      kind: "unary";
      path: string;
      bodies: Uint8Array[];
      token: string;
      reservationsPerCall: number;
    }
  /** Set a cart item, check out, record a successful payment; each session
   * in flight is one customer at a time, taken from `customerTokens`. */
  | {
      kind: "flow";
      customerTokens: string[];
      serviceToken: string;
      productIds: string[];
    };

export interface GrpcLoadOptions {
  /** host:port */
  address: string;
  client: GrpcClientKind;
  channelCount: number;
  /** Closed loop: calls (or flow sessions) in flight. Open loop: the most
   * in flight; a send due beyond it is skipped and counted. */
  inFlight: number;
  warmupMs: number;
  durationMs: number;
  /** null: closed loop; else calls started per second (unary only). */
  ratePerS: number | null;
  workload: GrpcWorkload;
  /** Every call goes to this method instead (the echo server); answers are
   * not decoded and the flow carries fixed ids. */
  echoPath: string | null;
}

export interface GrpcLoadResult {
  /** The measured window. */
  elapsedMs: number;
  /** Answers in the window, of every kind. */
  calls: number;
  /** "<method> <gRPC code name>" -> answers in the window. */
  byCode: Record<string, number>;
  /** "<method> <code>" -> the first message seen with it. */
  errorSamples: Record<string, string>;
  latency: LatencySummary;
  /** Answers with status OK only. */
  okLatency: LatencySummary;
  /** Flows whose payment was recorded, and their latency end to end. */
  flows: number;
  flowLatency: LatencySummary;
  /** ReserveBatch: reservations held, and refused, in the window. */
  reservationsOk: number;
  reservationsRefused: number;
  /** Open loop: sends skipped because `inFlight` calls were outstanding. */
  skipped: number;
  /** Calls started in the window. */
  started: number;
}

type Phase = "warmup" | "measure" | "drain";

// ---- channels -----------------------------------------------------------------------

/** code: a gRPC status code (0 OK); res: the answer's message bytes. */
type Answer = (code: number, details: string, res: Buffer | undefined) => void;

interface Channel {
  /** `authorization` is the whole header value, "Bearer ...". */
  call(path: string, body: Buffer, authorization: string, done: Answer): void;
  close(): void;
}

const identity = (b: Buffer) => b;

/** grpc-js copies a serialized message with Buffer methods; bytes that came
 * through a worker's message are plain Uint8Arrays. No copy is made. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

async function grpcJsChannel(address: string): Promise<Channel> {
  const client = new Client(address, credentials.createInsecure(), {
    // Without it, clients with equal settings share one connection.
    "grpc.use_local_subchannel_pool": 1,
    "grpc.max_receive_message_length": messageBytesMax,
    "grpc.max_send_message_length": messageBytesMax,
  });
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + connectMsMax, (err) => (err ? reject(err) : resolve())),
  );
  // grpc-js clones the metadata of each call: one object per token will do.
  const metadata = new Map<string, Metadata>();
  return {
    call(path, body, authorization, done) {
      let meta = metadata.get(authorization);
      if (meta === undefined) {
        meta = new Metadata();
        meta.set("authorization", authorization);
        metadata.set(authorization, meta);
      }
      client.makeUnaryRequest<Buffer, Buffer>(path, identity, identity, body, meta, (err, res) =>
        err === null ? done(0, "", res) : done(err.code, err.details, undefined),
      );
    },
    close: () => client.close(),
  };
}

/** gRPC status from an HTTP status when the server sent none (the gRPC
 * spec's table for HTTP to gRPC status). */
function codeOfHttpStatus(httpStatus: number): number {
  if (httpStatus === 400) return grpcStatus.INTERNAL;
  if (httpStatus === 401) return grpcStatus.UNAUTHENTICATED;
  if (httpStatus === 403) return grpcStatus.PERMISSION_DENIED;
  if (httpStatus === 404) return grpcStatus.UNIMPLEMENTED;
  if ([429, 502, 503, 504].includes(httpStatus)) return grpcStatus.UNAVAILABLE;
  return grpcStatus.UNKNOWN;
}

async function http2Channel(address: string): Promise<Channel> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(":")),
    address.slice(address.lastIndexOf(":") + 1),
  ];
  const session: ClientHttp2Session = connect(`http://${address}`, {
    maxSessionMemory: 64,
    createConnection: () => netConnect({ host, port: Number(port), noDelay: true }),
  });
  // A connection failure is told to each call by its stream's close.
  session.on("error", () => {});
  await Promise.race([
    once(session, "connect"),
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`http2: no connection to ${address}`)), connectMsMax),
    ),
  ]);
  // Each distinct body framed once (the 5-byte gRPC message prefix).
  const framed = new WeakMap<Buffer, Buffer>();
  const frame = (body: Buffer) => {
    let f = framed.get(body);
    if (f === undefined) {
      f = Buffer.allocUnsafe(body.length + 5);
      f[0] = 0;
      f.writeUInt32BE(body.length, 1);
      body.copy(f, 5);
      framed.set(body, f);
    }
    return f;
  };
  return {
    call(path, body, authorization, done) {
      const stream = session.request({
        [h2.HTTP2_HEADER_METHOD]: "POST",
        [h2.HTTP2_HEADER_PATH]: path,
        [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
        te: "trailers",
        authorization,
      });
      let code: number | null = null;
      let details = "";
      const chunks: Buffer[] = [];
      const status = (headers: Record<string, unknown>) => {
        const s = headers["grpc-status"];
        if (s === undefined) return false;
        code = Number(s);
        details = decodeURIComponent(String(headers["grpc-message"] ?? ""));
        return true;
      };
      // A trailers-only answer (most errors) has its status in the headers.
      stream.on("response", (headers) => {
        const httpStatus = Number(headers[h2.HTTP2_HEADER_STATUS]);
        if (!status(headers) && httpStatus !== 200) {
          code = codeOfHttpStatus(httpStatus);
          details = `HTTP ${httpStatus}`;
        }
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("trailers", status);
      stream.on("error", () => {});
      stream.on("close", () => {
        if (code === null) {
          done(grpcStatus.UNAVAILABLE, `stream closed (rst ${stream.rstCode})`, undefined);
        } else if (code !== 0) {
          done(code, details, undefined);
        } else {
          const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          done(0, "", all.subarray(5));
        }
      });
      stream.end(frame(body));
    },
    close: () => session.close(),
  };
}

// ---- counting -------------------------------------------------------------------------

function shortName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Results held (field `ok`) and refused (field `error`) in the wire bytes of
 * a ReserveBatchResponse, without decoding the messages. */
export function countBatchResults(bytes: Uint8Array): { ok: number; refused: number } {
  let ok = 0;
  let refused = 0;
  let i = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
      shift += 7;
    }
  };
  while (i < bytes.length) {
    const tag = varint();
    const length = varint();
    if (tag === 0x0a && length > 0) {
      if (bytes[i] === 0x0a) ok++;
      else if (bytes[i] === 0x12) refused++;
    }
    i += length;
  }
  return { ok, refused };
}

class Counters {
  readonly byCode: Record<string, number> = {};
  readonly errorSamples: Record<string, string> = {};
  readonly latency = new LatencyHistogram();
  readonly okLatency = new LatencyHistogram();
  readonly flowLatency = new LatencyHistogram();
  calls = 0;
  flows = 0;
  reservationsOk = 0;
  reservationsRefused = 0;
  skipped = 0;
  started = 0;

  answer(method: string, code: number, details: string, latencyMs: number): void {
    const key = `${method} ${grpcStatus[code] ?? String(code)}`;
    this.byCode[key] = (this.byCode[key] ?? 0) + 1;
    if (code !== 0 && this.errorSamples[key] === undefined) this.errorSamples[key] = details;
    this.calls++;
    this.latency.recordMs(latencyMs);
    if (code === 0) this.okLatency.recordMs(latencyMs);
  }

  result(elapsedMs: number): GrpcLoadResult {
    return {
      elapsedMs,
      calls: this.calls,
      byCode: this.byCode,
      errorSamples: this.errorSamples,
      latency: this.latency.summaryMs(),
      okLatency: this.okLatency.summaryMs(),
      flows: this.flows,
      flowLatency: this.flowLatency.summaryMs(),
      reservationsOk: this.reservationsOk,
      reservationsRefused: this.reservationsRefused,
      skipped: this.skipped,
      started: this.started,
    };
  }
}

// ---- the load ---------------------------------------------------------------------------

/** One call on a slot's channel; `done` runs after the answer is counted. */
type CallFn = (
  slot: number,
  path: string,
  body: Buffer,
  authorization: string,
  startMs: number,
  done: Answer,
) => void;

/** Runs the load in this thread. */
export async function runGrpcLoad(
  o: GrpcLoadOptions,
  onPhase: (mark: PhaseMark) => void,
): Promise<GrpcLoadResult> {
  const open = o.client === "grpc-js" ? grpcJsChannel : http2Channel;
  const channels = await Promise.all(Array.from({ length: o.channelCount }, () => open(o.address)));
  let phase: Phase = "warmup";
  let counters = new Counters();
  let inFlight = 0;
  let drained: () => void = () => {};

  const call: CallFn = (slot, path, body, authorization, startMs, done) => {
    const method = shortName(path);
    inFlight++;
    if (phase === "measure") counters.started++;
    channels[slot % channels.length]!.call(
      o.echoPath ?? path,
      body,
      authorization,
      (code, details, res) => {
        if (phase === "measure")
          counters.answer(method, code, details, performance.now() - startMs);
        done(code, details, res);
        if (--inFlight === 0 && phase === "drain") drained();
      },
    );
  };
  const current = { phase: () => phase, counters: () => counters };
  const start =
    o.workload.kind === "flow"
      ? flowSession(o, o.workload, call, current)
      : unarySender(o, o.workload, call, current);

  let stopRate = () => {};
  if (o.ratePerS === null) {
    for (let slot = 0; slot < o.inFlight; slot++) start(slot, performance.now(), true);
  } else {
    if (o.workload.kind !== "unary") throw new Error("a fixed rate needs a unary workload");
    let next = 0;
    stopRate = fixedRate(o.ratePerS, (dueMs) => {
      if (inFlight < o.inFlight) start(next++, dueMs, false);
      else if (phase === "measure") counters.skipped++;
    });
  }

  await sleep(o.warmupMs);
  counters = new Counters();
  phase = "measure";
  const measureStartMs = performance.now();
  onPhase("measure");
  await sleep(o.durationMs);
  phase = "drain";
  const elapsedMs = performance.now() - measureStartMs;
  onPhase("drain");
  stopRate();
  const measured = counters;
  if (inFlight > 0) {
    await Promise.race([new Promise<void>((r) => (drained = r)), sleep(drainMsMax)]);
  }
  for (const c of channels) c.close();
  return measured.result(elapsedMs);
}

interface Current {
  phase(): Phase;
  counters(): Counters;
}

/** Starts a unary call on a slot; `again`: the next when it ends. */
type Starter = (slot: number, startMs: number, again: boolean) => void;

function unarySender(
  o: GrpcLoadOptions,
  u: Extract<GrpcWorkload, { kind: "unary" }>,
  call: CallFn,
  current: Current,
): Starter {
  const bodies = u.bodies.map(asBuffer);
  const authorization = `Bearer ${u.token}`;
  const send: Starter = (slot, startMs, again) => {
    const body = bodies[Math.floor(Math.random() * bodies.length)]!;
    call(slot, u.path, body, authorization, startMs, (code, _details, res) => {
      if (code === 0 && u.reservationsPerCall > 0 && current.phase() === "measure") {
        // The echo's answer is no batch: it counts the requests it carried.
        const r =
          o.echoPath === null
            ? countBatchResults(res ?? Buffer.alloc(0))
            : { ok: u.reservationsPerCall, refused: 0 };
        current.counters().reservationsOk += r.ok;
        current.counters().reservationsRefused += r.refused;
      }
      if (again && current.phase() !== "drain") send(slot, performance.now(), true);
    });
  };
  return send;
}

/** Sessions of the checkout flow, each kept going on its slot until the
 * drain, one customer at a time. */
function flowSession(
  o: GrpcLoadOptions,
  w: Extract<GrpcWorkload, { kind: "flow" }>,
  call: CallFn,
  current: Current,
): Starter {
  const free = w.customerTokens.map((t) => `Bearer ${t}`);
  const service = `Bearer ${w.serviceToken}`;
  const echo = o.echoPath !== null;
  let paymentSeq = 0;
  const session = (slot: number) => {
    if (current.phase() === "drain") return;
    // More customers than sessions, and each one is given back on every
    // path, so one is free; the fallback only guards against a leak.
    const customer = free.pop() ?? `Bearer ${w.customerTokens[slot % w.customerTokens.length]}`;
    const flowStartMs = performance.now();
    const end = () => {
      free.unshift(customer);
      session(slot);
    };
    const productId = w.productIds[Math.floor(Math.random() * w.productIds.length)]!;
    const setItem = asBuffer(
      toBinary(
        SetCartItemRequestSchema,
        create(SetCartItemRequestSchema, { productId, quantity: 1n }),
      ),
    );
    call(slot, methodPaths.setCartItem, setItem, customer, performance.now(), (c1, _d1, r1) => {
      if (c1 !== 0 || r1 === undefined) return end();
      const cartId = echo ? "echo" : fromBinary(SetCartItemResponseSchema, r1).cart?.id;
      if (cartId === undefined) return end();
      const checkout = asBuffer(
        toBinary(CheckoutRequestSchema, create(CheckoutRequestSchema, { cartId })),
      );
      call(slot, methodPaths.checkout, checkout, customer, performance.now(), (c2, _d2, r2) => {
        if (c2 !== 0 || r2 === undefined) return end();
        const orderId = echo ? "echo" : fromBinary(CheckoutResponseSchema, r2).order?.id;
        if (orderId === undefined) return end();
        const pay = asBuffer(
          toBinary(
            RecordPaymentRequestSchema,
            create(RecordPaymentRequestSchema, {
              orderId,
              status: PaymentStatus.SUCCEEDED,
              paymentId: `bench-pay-${++paymentSeq}`,
            }),
          ),
        );
        call(slot, methodPaths.recordPayment, pay, service, performance.now(), (c3) => {
          if (c3 === 0 && current.phase() === "measure") {
            current.counters().flows++;
            current.counters().flowLatency.recordMs(performance.now() - flowStartMs);
          }
          end();
        });
      });
    });
  };
  return (slot) => session(slot);
}

/** Calls `send(startMs)` ratePerS times a second on a schedule that
 * does not wait for answers; answers a function that stops it. */
function fixedRate(ratePerS: number, send: (dueMs: number) => void): () => void {
  const t0 = performance.now();
  const intervalMs = 1000 / ratePerS;
  let sent = 0;
  let timer: NodeJS.Timeout | null = null;
  const tick = () => {
    // Latency counts from this look at the clock, not from when each call
    // fell due: the timer's lateness is the load generator's own.
    const nowMs = performance.now();
    const due = Math.floor((nowMs - t0) / intervalMs);
    for (; sent < due; sent++) send(nowMs);
    timer = setTimeout(tick, rateTickMs);
  };
  tick();
  return () => {
    if (timer !== null) clearTimeout(timer);
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- in a worker thread ----------------------------------------------------------

/** Runs the load in a worker thread of its own: the calling thread only
 * hears the phase marks and the result. */
export function runGrpcLoadInWorker(
  o: GrpcLoadOptions,
  onPhase: (mark: PhaseMark) => void,
): Promise<GrpcLoadResult> {
  return runInWorker(import.meta.url, "grpcLoad", o, onPhase);
}

serveInWorker("grpcLoad", runGrpcLoad);
