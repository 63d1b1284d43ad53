// What the replication benchmark watches besides throughput: the
// follower's lag gauges sampled during a load, how long after a load the
// follower has everything (by its gauges, and by a marker write read back
// from it), and the takeover time when the leader is killed under load.

import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, status as grpcStatus, Metadata } from "@grpc/grpc-js";
import { ReserveRequestSchema } from "../../src/gen/stockd/v1/api_pb.ts";
import { postJson, type Sku } from "./gateway_seed.ts";
import { methodPaths } from "./grpc_load.ts";
import { type LagReading, lagReading, logRecords, type StockdNode } from "./replication_nodes.ts";
import { LatencyHistogram, round } from "./stats.ts";

// ---- lag samples --------------------------------------------------------------------------

export interface LagSample extends LagReading {
  /** performance.now() when the answer came. */
  atMs: number;
  measuring: boolean;
}

export interface LagFigures {
  samples: number;
  /** Samples the follower did not answer in time. */
  missed: number;
  lagMsMax: number;
  lagMsP99: number;
  lagEventsMax: number;
  lagEventsP99: number;
}

/** Samples the follower's lag gauges every `intervalMs` (one scrape at a
 * time: a slow answer skips a turn and counts as missed). */
export class LagSampler {
  readonly samples: LagSample[] = [];
  missed = 0;
  measuring = false;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(
    private readonly follower: StockdNode,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private async sample(): Promise<void> {
    if (this.busy) {
      if (this.measuring) this.missed++;
      return;
    }
    this.busy = true;
    const measuring = this.measuring;
    try {
      const r = await lagReading(this.follower, this.intervalMs * 4);
      if (r === null) {
        if (measuring) this.missed++;
      } else this.samples.push({ ...r, atMs: performance.now(), measuring });
    } finally {
      this.busy = false;
    }
  }

  /** Max and p99 over the samples of the measured window. */
  figures(): LagFigures {
    const inWindow = this.samples.filter((s) => s.measuring);
    const p99 = (xs: number[]) => {
      if (xs.length === 0) return 0;
      const sorted = [...xs].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!;
    };
    const ms = inWindow.map((s) => s.lagMs);
    const ev = inWindow.map((s) => s.lagEvents);
    return {
      samples: inWindow.length,
      missed: this.missed,
      lagMsMax: ms.length === 0 ? 0 : Math.max(...ms),
      lagMsP99: p99(ms),
      lagEventsMax: ev.length === 0 ? 0 : Math.max(...ev),
      lagEventsP99: p99(ev),
    };
  }
}

// ---- catching up after a load ------------------------------------------------------------

export interface CatchUp {
  /** From the end of the load to the first sample of both gauges at 0
   * (null: not within the timeout, or not watched). */
  gaugesZeroMs: number | null;
  /** From the end of the load until the follower served a receipt
   * written on the leader after the load (so everything before it). */
  markerVisibleMs: number | null;
  /** The marker's own round trip on the leader (in markerVisibleMs). */
  markerWriteMs: number;
}

/** Waits for the follower to have everything the load wrote: a receipt of
 * 1 unit of `marker` written on the leader must be readable from the
 * follower; the gauges must read 0. `loadEndMs`: performance.now() when the
 * load stopped sending. */
export async function catchUp(
  leader: StockdNode,
  follower: StockdNode,
  marker: Sku,
  adminToken: string,
  loadEndMs: number,
  timeoutMs: number,
  watchGauges = true,
): Promise<CatchUp> {
  const deadline = performance.now() + timeoutMs;
  const gauges = (async () => {
    if (!watchGauges) return null;
    for (;;) {
      const r = await lagReading(follower);
      if (r !== null && r.lagMs === 0 && r.lagEvents === 0) return performance.now() - loadEndMs;
      if (performance.now() > deadline) return null;
      await sleep(50);
    }
  })();
  const t0 = performance.now();
  const level = await postJson(
    leader.httpUrl,
    "/v1/inventory/receipts",
    adminToken,
    { ...marker, quantity: 1 },
    200,
  );
  const markerWriteMs = performance.now() - t0;
  const want = Number(level.available);
  let markerVisibleMs: number | null = null;
  for (;;) {
    const available = await followerAvailable(follower, marker, adminToken);
    if (available !== null && available >= want) {
      markerVisibleMs = performance.now() - loadEndMs;
      break;
    }
    if (performance.now() > deadline) break;
    await sleep(5);
  }
  return {
    gaugesZeroMs: nullableRound(await gauges),
    markerVisibleMs: nullableRound(markerVisibleMs),
    markerWriteMs: round(markerWriteMs, 1),
  };
}

async function followerAvailable(
  node: StockdNode,
  sku: Sku,
  token: string,
): Promise<number | null> {
  try {
    const res = await fetch(`${node.httpUrl}/v1/inventory/${encodeURIComponent(sku.productId)}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(1_000),
    });
    if (!res.ok) return null;
    const body = (await res.json()) as {
      warehouses?: { warehouseId: string; available: number }[];
    };
    return body.warehouses?.find((w) => w.warehouseId === sku.warehouseId)?.available ?? null;
  } catch {
    return null;
  }
}

function nullableRound(x: number | null): number | null {
  return x === null ? null : round(x, 0);
}

// ---- takeover -----------------------------------------------------------------------------

const identity = (b: Buffer) => b;

/** A gRPC client of single Reserve calls with a deadline each. */
class ReserveClient {
  private readonly client: Client;
  private readonly meta = new Metadata();
  private readonly bodies: Buffer[];

  constructor(address: string, token: string, skus: Sku[]) {
    this.client = new Client(address, credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    });
    this.meta.set("authorization", `Bearer ${token}`);
    this.bodies = skus.map((sku) =>
      Buffer.from(
        toBinary(
          ReserveRequestSchema,
          create(ReserveRequestSchema, { lines: [{ ...sku, quantity: 1n }] }),
        ),
      ),
    );
  }

  ready(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())),
    );
  }

  /** Resolves with the gRPC code (0: held). */
  reserve(deadlineMs: number): Promise<number> {
    const body = this.bodies[Math.floor(Math.random() * this.bodies.length)]!;
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        methodPaths.reserve,
        identity,
        identity,
        body,
        this.meta,
        { deadline: Date.now() + deadlineMs },
        (err) => resolve(err === null ? 0 : err.code),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export interface TakeoverOptions {
  serviceToken: string;
  skus: Sku[];
  /** Reserve calls the load keeps in flight on the leader. */
  loadInFlight: number;
  /** How long the load runs before the kill. */
  loadMs: number;
  /** Pause between two probes of the follower. */
  probeIntervalMs: number;
  timeoutMs: number;
}

export interface TakeoverRound {
  killed: string;
  newLeader: string;
  /** Reserve calls held per second on the leader in the second before the kill. */
  loadOkPerS: number;
  loadLatencyP99Ms: number;
  /** The kill to the first write the new leader accepted (null: none in time). */
  takeoverMs: number | null;
  /** The kill to the new leader's "leases taken" and "leading" log lines
   * (from the timestamps of its log, same machine's clock). */
  leasesTakenMs: number | null;
  leadingMs: number | null;
  /** What the new leader logged as its takeover's duration (leases taken
   * until leading: catching up, fencing, opening the data as leader). */
  takeoverLoggedMs: number | null;
  /** The new leader's log from the kill until it led: each line's msg,
   * its time from the kill, and the figures that tell (events replayed). */
  newLeaderLog: { msg: string; sinceKillMs: number; detail?: Record<string, unknown> }[];
  /** Probe answers after the kill and before the first accepted write, by code. */
  refusedAfterKill: Record<string, number>;
  /** Probe answers before the kill that were not UNAVAILABLE (a follower
   * accepting a write would be a bug). */
  unexpectedBeforeKill: Record<string, number>;
}

/**
 * Runs a closed loop of single Reserve calls against `leader`, probes
 * `follower` with Reserve calls (refused UNAVAILABLE while it follows),
 * SIGKILLs the leader after `loadMs` and measures the time from the kill
 * to the first probe the follower accepts. `kill` sends the signal.
 */
export async function takeover(
  leader: StockdNode,
  follower: StockdNode,
  o: TakeoverOptions,
  kill: () => void,
): Promise<TakeoverRound> {
  const load = new ReserveClient(leader.grpcAddress, o.serviceToken, o.skus);
  const probe = new ReserveClient(follower.grpcAddress, o.serviceToken, o.skus);
  await Promise.all([load.ready(10_000), probe.ready(10_000)]);

  // The load: closed loop; a failed call waits a little before the next, so
  // that a dead leader does not make it spin and take CPU from the follower.
  let loading = true;
  const okTimes: number[] = [];
  const latency = new LatencyHistogram();
  const slot = async () => {
    while (loading) {
      const t0 = performance.now();
      const code = await load.reserve(2_000);
      if (code === 0) {
        const t1 = performance.now();
        okTimes.push(t1);
        latency.recordMs(t1 - t0);
      } else await sleep(20);
    }
  };
  const slots = Array.from({ length: o.loadInFlight }, slot);

  // The probe: one call at a time until the first accepted after the kill.
  let killedAtMs: number | null = null;
  let acceptedAtMs: number | null = null;
  const refusedAfterKill: Record<string, number> = {};
  const unexpectedBeforeKill: Record<string, number> = {};
  const codeName = (c: number) => grpcStatus[c] ?? String(c);
  const probing = (async () => {
    for (;;) {
      const sentAfterKill = killedAtMs !== null;
      const code = await probe.reserve(1_000);
      const at = performance.now();
      if (code === 0 && killedAtMs !== null) {
        acceptedAtMs = at;
        return;
      }
      if (killedAtMs !== null && sentAfterKill) {
        refusedAfterKill[codeName(code)] = (refusedAfterKill[codeName(code)] ?? 0) + 1;
      } else if (code !== grpcStatus.UNAVAILABLE) {
        unexpectedBeforeKill[codeName(code)] = (unexpectedBeforeKill[codeName(code)] ?? 0) + 1;
      }
      if (killedAtMs !== null && at - killedAtMs > o.timeoutMs) return;
      await sleep(o.probeIntervalMs);
    }
  })();

  await sleep(o.loadMs);
  const killMs = performance.now();
  const killWallMs = Date.now();
  kill();
  killedAtMs = killMs;
  loading = false;
  const loadOk = okTimes.filter((t) => t > killMs - 1_000 && t <= killMs).length;
  await probing;
  await Promise.all(slots);
  load.close();
  probe.close();

  const sinceKill = (msg: string) => {
    const r = logRecords(follower, msg).at(-1);
    return typeof r?.time === "number" ? Math.max(0, r.time - killWallMs) : null;
  };
  const leading = logRecords(follower, "leading").at(-1);
  const newLeaderLog = logRecords(follower, null)
    .filter((r) => typeof r.time === "number" && r.time >= killWallMs)
    .map((r) => {
      const { time, msg, level: _l, pid: _p, hostname: _h, name: _n, ...rest } = r;
      const line = { msg: String(msg), sinceKillMs: (time as number) - killWallMs };
      return Object.keys(rest).length === 0 ? line : { ...line, detail: rest };
    });
  return {
    killed: leader.name,
    newLeader: follower.name,
    loadOkPerS: loadOk,
    loadLatencyP99Ms: latency.summaryMs().p99Ms,
    takeoverMs: acceptedAtMs === null ? null : round((acceptedAtMs as number) - killMs, 0),
    leasesTakenMs: sinceKill("leases taken: catching up"),
    leadingMs: sinceKill("leading"),
    takeoverLoggedMs: typeof leading?.ms === "number" ? leading.ms : null,
    newLeaderLog,
    refusedAfterKill,
    unexpectedBeforeKill,
  };
}
