import { hostname } from "node:os";
import { headers as natsHeaders } from "nats";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { limits, type PartitionConfig } from "../engine/index.ts";
import { type Engine, type PublishItem, randomHashSeed } from "../host/index.ts";
import {
  type CoordinatorReplica,
  type RecordReplica,
  RecordStore,
  type RecordWrite,
  Store,
} from "../persistence/index.ts";
import {
  type ClusterLink,
  type ClusterOptions,
  clusterMeta,
  openCluster,
  refusedAsNotLast,
} from "./connection.ts";
import { Follower, positionKey } from "./follower.ts";
import { Leases, type LeaseValue } from "./lease.ts";
import {
  followerStartMs,
  followRetryMsMax,
  leaseMsDefault,
  snapshotCheckMs,
  streamStallMsMin,
} from "./limits.ts";
import { Header, nodeReportKey } from "./names.ts";
import { type Position, Publisher } from "./publisher.ts";
import { reconcile } from "./reconcile.ts";
import { type PublishedSnapshots, publishSnapshots } from "./snapshots.ts";

/** How a node's data is opened: following a leader, or leading. */
export type DataMode =
  | { kind: "follower"; readOnly: () => string }
  | {
      kind: "leader";
      epochs: number[];
      replicate: (items: PublishItem[]) => Promise<void>;
      coordinatorReplica: (store: Store) => CoordinatorReplica;
      recordReplica: (records: RecordStore) => RecordReplica;
    };

/** What a cluster node needs from the server it runs in. */
export interface DataHost {
  /** Opens the engine, records and gateway in a mode; a leader's also
   * recovers (expires overdue holds, re-drives interrupted orders). */
  openData(
    mode: DataMode,
  ): Promise<{ engine: Engine; records: RecordStore; learn: (w: RecordWrite[]) => void }>;
  closeData(): Promise<void>;
  /** Turns the open follower data into the leader's in place. */
  promoteData(mode: Extract<DataMode, { kind: "leader" }>): Promise<void>;
  setRole(role: "starting" | "follower" | "leader", detail: string): void;
}

export interface NodeOptions extends ClusterOptions {
  dataDir: string;
  partitionCount?: number;
  idempotencyWindowMs?: number;
  /** Lease time (default limits: 3 s). */
  leaseMs?: number;
  /** Where this node serves, for followers to name it. */
  advertise: { http: string; grpc: string };
  holdDurationMs: number;
  /** Publish snapshots once this many events were journaled since the last
   * ones (default limits.snapshotIntervalEventCountDefault; 0: only on request). */
  snapshotEveryEvents?: number;
  logger: Logger;
  registry: Registry;
}

/** A node's report in the lease bucket (cluster status, follower lag). */
export interface NodeReport {
  node: string;
  role: string;
  http: string;
  grpc: string;
  pid: number;
  host: string;
  /** Each partition's last journal seq on this node. */
  seqs: number[];
  appliedStreamSeq: number;
  lagMs: number;
  updateTimeMs: number;
}

/**
 * One stockd node of a cluster: follows the leader's stream into its own
 * LMDB and memory, takes every lease when they are free and it has applied
 * everything, leads (publishing each write before acknowledging it), and
 * steps down (back to following, its unreplicated tail cut) when it loses a
 * lease or another leader wrote. One node leads every partition at a time;
 * the per-partition leases and epochs are what a later spread of partitions
 * over nodes will build on.
 */
export class ClusterNode {
  role: "starting" | "follower" | "leader" | "stopped" = "starting";
  private follower: Follower | null = null;
  private publisher: Publisher | null = null;
  private leader: LeaseValue | null = null;
  private timer: NodeJS.Timeout | null = null;
  private hintTimer: NodeJS.Timeout | null = null;
  private changing: Promise<void> = Promise.resolve();
  private ticking = false;
  private reporting = false;
  private stopping = false;
  private engine: Engine | null = null;
  private records: RecordStore | null = null;
  private lagMs = 0;
  private readonly m: ReturnType<typeof clusterMetrics>;
  private readonly partitionConfig: PartitionConfig;
  private snapshotTimer: NodeJS.Timeout | null = null;
  private eventsAtSnapshot = 0;

  private constructor(
    readonly link: ClusterLink,
    private readonly host: DataHost,
    private readonly o: NodeOptions,
    meta: { partitionCount: number; idempotencyWindowMs: number },
    private readonly leases: Leases,
  ) {
    this.m = clusterMetrics(o.registry);
    this.partitionCount = meta.partitionCount;
    this.partitionConfig = {
      partitionCount: meta.partitionCount,
      idempotencyWindowMs: meta.idempotencyWindowMs,
      holdDurationMs: o.holdDurationMs,
      wheelTickMs: limits.wheelTickMsDefault,
      requestHashSeed: randomHashSeed(),
    };
  }

  readonly partitionCount: number;

  static async start(host: DataHost, o: NodeOptions): Promise<ClusterNode> {
    const link = await openCluster(o);
    try {
      // The data directory takes the cluster's fixed settings (or gives its own, first).
      const store = Store.open(o.dataDir);
      let meta: { partitionCount: number; idempotencyWindowMs: number };
      try {
        const local = store.readMeta();
        meta = await clusterMeta(link, {
          partitionCount: local?.partitionCount ?? o.partitionCount ?? limits.partitionCountDefault,
          idempotencyWindowMs:
            local?.idempotencyWindowMs ??
            o.idempotencyWindowMs ??
            limits.idempotencyWindowMsDefault,
        });
        await store.initMeta(meta, Date.now());
      } finally {
        await store.close();
      }
      const leaseMs = o.leaseMs ?? leaseMsDefault;
      const leases = new Leases({
        link,
        partitionCount: meta.partitionCount,
        leaseMs,
        self: { node: o.node, ...o.advertise },
        logger: o.logger,
        onRenew: (ok) => {
          if (ok) node.m.renewals.inc();
        },
      });
      const node: ClusterNode = new ClusterNode(link, host, o, meta, leases);
      await node.follow();
      node.timer = setInterval(() => void node.tick(), Math.max(50, Math.floor(leaseMs / 4)));
      node.answerSnapshotRequests();
      const every = o.snapshotEveryEvents ?? limits.snapshotIntervalEventCountDefault;
      if (every > 0) {
        node.snapshotTimer = setInterval(() => void node.snapshotIfDue(every), snapshotCheckMs);
        node.snapshotTimer.unref();
      }
      node.hintTimer = setInterval(() => void node.saveHints(), 1_000);
      return node;
    } catch (err) {
      await link.nc.close().catch(() => undefined);
      throw err;
    }
  }

  /** Why this node refuses writes (followers), naming the leader. */
  readOnly(): string {
    const l = this.leader;
    const me = `node ${this.o.node} follows in cluster ${this.link.names.cluster}`;
    if (l === null || l.node === this.o.node) return `${me}; no leader yet: retry shortly`;
    return `${me}: send writes to the leader, node ${l.node} (HTTP ${l.http}, gRPC ${l.grpc})`;
  }

  /** Takes snapshots and publishes them to the object store (leader only). */
  async publishSnapshots(): Promise<PublishedSnapshots> {
    const publisher = this.publisher;
    const engine = this.engine;
    if (this.role !== "leader" || publisher === null || engine === null || this.records === null) {
      throw new Error("only the leader publishes snapshots");
    }
    return publishSnapshots({
      link: this.link,
      store: engine.coordinatorRecords,
      records: this.records,
      config: this.partitionConfig,
      batches: publisher.batches,
      logger: this.o.logger,
    });
  }

  private async snapshotIfDue(every: number): Promise<void> {
    const engine = this.engine;
    if (this.role !== "leader" || engine === null) return;
    const s = await engine.stats();
    if (s.eventsJournaled === undefined || s.eventsJournaled - this.eventsAtSnapshot < every)
      return;
    this.eventsAtSnapshot = s.eventsJournaled;
    await this.publishSnapshots().catch((err: Error) =>
      this.o.logger.warn({ err: err.message }, "snapshot publication failed"),
    );
  }

  /** The leader answers `stockd cluster snapshot`; followers stay silent. */
  private answerSnapshotRequests(): void {
    this.link.nc.subscribe(this.link.names.snapshotRequest, {
      callback: (_err, m) => {
        if (this.role !== "leader") return;
        this.publishSnapshots().then(
          (r) => m.respond(JSON.stringify({ ok: true, node: this.o.node, ...r })),
          (err: Error) =>
            m.respond(JSON.stringify({ ok: false, node: this.o.node, error: err.message })),
        );
      },
    });
  }

  /** Called when the engine broke down (a publish was refused, the
   * journal failed): a leader steps down. */
  engineBroken(why: string): void {
    if (this.role === "leader") void this.change(() => this.stepDown(why));
  }

  async close(): Promise<void> {
    this.stopping = true;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.hintTimer !== null) clearInterval(this.hintTimer);
    if (this.snapshotTimer !== null) clearInterval(this.snapshotTimer);
    this.timer = null;
    await this.changing;
    const publisher = this.role === "leader" ? this.publisher : null;
    this.role = "stopped";
    await this.follower?.stop();
    this.follower = null;
    // Closing drains the leader's last commits (their publishes included).
    await this.closeData();
    if (publisher !== null) {
      const store = Store.open(this.o.dataDir);
      try {
        await store.putMeta(hintsOf(publisher));
      } finally {
        await store.close();
      }
      // Stopped cleanly: the others need not wait for the leases to run out.
      await this.leases.release().catch(() => undefined);
    }
    this.leases.drop();
    await this.link.nc.drain().catch(() => undefined);
  }

  // ---- roles -----------------------------------------------------------------

  /** Role changes run one at a time. A failed one leaves this node
   * following again, retrying until it can. */
  private change(step: () => Promise<void>): Promise<void> {
    this.changing = this.changing.then(step).catch(async (err: Error) => {
      this.o.logger.error({ err: err.message }, "role change failed: following again");
      await this.reset();
      await this.followUntilDone();
    });
    return this.changing;
  }

  /** Drops whatever role this node had: nothing is acknowledged after. */
  private async reset(): Promise<void> {
    const leading = this.leases.leading;
    this.leases.drop();
    this.publisher = null;
    await this.follower?.stop().catch(() => undefined);
    this.follower = null;
    await this.closeData().catch(() => undefined);
    if (this.role !== "stopped") this.role = "starting";
    if (leading) await this.leases.release().catch(() => undefined);
  }

  private async followUntilDone(): Promise<void> {
    let attempt = 0;
    for (let delayMs = 500; !this.stopping; delayMs = Math.min(delayMs * 2, followRetryMsMax)) {
      await new Promise((r) => setTimeout(r, delayMs));
      if (this.stopping) return;
      try {
        await this.follow(++attempt);
        return;
      } catch (err) {
        const why = (err as Error).message;
        this.o.logger.warn({ err: why, retryMs: delayMs }, "cannot follow the cluster yet");
        this.host.setRole("starting", `cannot follow the cluster yet: ${why}`);
        await this.reset();
      }
    }
  }

  /** Cuts what the cluster does not hold, opens the data as a follower and
   * applies the stream from where this node stopped. */
  private async follow(attempt = 1): Promise<void> {
    if (this.role === "stopped") return;
    this.host.setRole("starting", "reconciling with the cluster");
    const store = Store.open(this.o.dataDir);
    const records = RecordStore.open(this.o.dataDir);
    try {
      await reconcile({
        link: this.link,
        store,
        records,
        partitionCount: this.partitionCount,
        config: this.partitionConfig,
        logger: this.o.logger,
      });
    } finally {
      await records.close();
      await store.close();
    }
    const data = await this.host.openData({ kind: "follower", readOnly: () => this.readOnly() });
    this.engine = data.engine;
    this.records = data.records;
    const s = await data.engine.stats();
    const seqs = Array.from({ length: this.partitionCount }, (_, p) => s.seqs[p] ?? 0);
    const follower = new Follower({
      link: this.link,
      engine: data.engine,
      store: data.engine.coordinatorRecords,
      records: data.records,
      seqs,
      logger: this.o.logger,
      onRecords: data.learn,
      onFail: () => void this.change(() => this.resync()),
    });
    this.follower = follower;
    // Making the consumer waits while NATS elects a leader, or when NATS
    // placed it on a server that died: give up and try again (placed anew)
    // rather than hang, a little longer with each try.
    const startMs = Math.min(this.stallMs(), followerStartMs * attempt);
    await withDeadline(follower.start(), startMs, "starting to consume the stream");
    this.role = "follower";
    this.host.setRole("follower", this.readOnly());
  }

  private async resync(): Promise<void> {
    if (this.role !== "follower") return;
    this.m.followerRestarts.inc();
    await this.reset();
    await this.followUntilDone();
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.role === "stopped") return;
    this.ticking = true;
    try {
      if (this.leases.leading) {
        if (!(await this.leases.renew())) void this.change(() => this.stepDown("lease lost"));
      } else {
        const { leader, free } = await this.leases.observe();
        this.leader = leader;
        if (this.role === "follower") this.host.setRole("follower", this.readOnly());
        if (free && this.role === "follower") void this.change(() => this.takeOver());
      }
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "cluster tick failed");
    } finally {
      this.ticking = false;
    }
    // Apart from the renewal: a report waits for the engine's stats, which
    // wait for the commit in flight (a publish while JetStream elects a
    // stream leader takes seconds), and renewing must not wait for that.
    if (this.reporting) return;
    this.reporting = true;
    this.report()
      .catch((err: Error) => {
        if (!this.stopping) this.o.logger.warn({ err: err.message }, "cluster report failed");
      })
      .finally(() => {
        this.reporting = false;
      });
  }

  /** Takes every lease, applies all the stream holds, fences older
   * writers, and reopens the data as the leader. */
  private async takeOver(): Promise<void> {
    const follower = this.follower;
    if (this.role !== "follower" || follower === null || follower.failed !== null) return;
    const started = performance.now();
    if (!(await this.leases.take())) return;
    this.o.logger.info({ node: this.o.node }, "leases taken: catching up");
    const positions = await this.fence(follower);
    await follower.stop();
    if (follower.failed !== null) throw follower.failed;
    this.follower = null;
    // The last batch of each partition applied while following: what the
    // first snapshots may cover.
    const batches = new Map<number, Position>();
    for (let p = 0; p < this.partitionCount; p++) {
      const pos = this.engine?.coordinatorRecords.getMeta<Position>(positionKey.partition(p));
      if (pos !== undefined && pos.streamSeq > 0) batches.set(p, pos);
    }
    const epochs = this.leases.epochs();
    const publisher = new Publisher({
      link: this.link,
      epochs: epochs.partitions,
      gatewayEpoch: epochs.gateway,
      positions,
      fenced: () => this.leases.fenced(),
      observe: (_subject, ms) => this.m.publishSeconds.observe(ms / 1000),
      onFail: (why) => {
        this.o.logger.warn({ node: this.o.node, err: why }, "a replicated write failed");
        if (this.publisher === publisher) this.engineBroken(`a replicated write failed: ${why}`);
      },
    });
    for (const [p, pos] of batches) publisher.batches.set(p, pos);
    this.publisher = publisher;
    this.leader = { node: this.o.node, ...this.o.advertise, renewTimeMs: Date.now() };
    await this.host.promoteData({
      kind: "leader",
      epochs: epochs.partitions,
      replicate: (items) => publisher.publishBatches(items),
      coordinatorReplica: (store) => ({
        replicateCoordinator: (writes) =>
          publisher.publishCoordinator(writes, (w, seq) =>
            store.writeCoordinator(w, false, [[positionKey.coordinator, seq]]),
          ),
      }),
      recordReplica: (records) => ({
        replicateRecords: (writes) =>
          publisher.publishRecords(writes, (w, seq) =>
            records.writeLocal(w, [[positionKey.records, seq]]),
          ),
      }),
    });
    this.role = "leader";
    // A write that failed while taking over leaves this leader unable to
    // publish: it steps down at once rather than refuse every write.
    if (publisher.failed !== null) {
      this.engineBroken(`a replicated write failed: ${publisher.failed.message}`);
    }
    this.m.takeovers.inc();
    const ms = Math.round(performance.now() - started);
    this.host.setRole("leader", `leading ${this.partitionCount} partitions`);
    this.o.logger.info({ node: this.o.node, epoch: epochs.gateway, ms }, "leading");
  }

  /**
   * Waits until this node has applied everything the stream holds, then
   * appends a fence message to every subject, expecting the last message
   * it applied: once stored, a write by any older leader (expecting an
   * older last message) is refused. A fence refused means an older leader
   * wrote in between: apply that too, and fence again.
   */
  private async fence(follower: Follower): Promise<Map<string, Position>> {
    const names = this.link.names;
    const subjects = [names.records, names.coordinator];
    for (let p = 0; p < this.partitionCount; p++) subjects.push(names.partition(p));
    const positions = new Map<string, Position>();
    for (let attempt = 0; ; attempt++) {
      const info = await this.link.jsm.streams.info(names.stream);
      await follower.caughtUp(info.state.last_seq, this.stallMs());
      let refused = false;
      const epoch = String(this.leases.epochs().gateway);
      await Promise.all(
        subjects
          .filter((subject) => !positions.has(subject))
          .map(async (subject) => {
            const last = await this.lastOf(subject);
            const h = natsHeaders();
            h.set(Header.Fence, epoch);
            h.set(Header.Node, this.o.node);
            try {
              const ack = await this.link.js.publish(subject, new Uint8Array(0), {
                headers: h,
                expect: { lastSubjectSequence: last },
              });
              positions.set(subject, { streamSeq: ack.seq, journalSeq: 0 });
            } catch (err) {
              if (!refusedAsNotLast(err) || attempt >= 10) throw err;
              refused = true;
            }
          }),
      );
      if (!refused) return positions;
    }
  }

  private async lastOf(subject: string): Promise<number> {
    try {
      const m = await this.link.jsm.streams.getMessage(this.link.names.stream, {
        last_by_subj: subject,
      });
      return m.seq;
    } catch (err) {
      if (/no message found/i.test((err as Error).message)) return 0;
      throw err;
    }
  }

  /** Stops acknowledging at once, then follows again from what the
   * cluster holds (cutting this node's unreplicated tail). */
  private async stepDown(why: string): Promise<void> {
    if (this.role !== "leader") return;
    this.o.logger.warn({ node: this.o.node, why }, "stepping down");
    this.leases.drop();
    this.publisher = null;
    this.role = "follower";
    this.host.setRole("starting", `stepping down: ${why}`);
    await this.closeData();
    this.role = "starting";
    await this.follow();
  }

  /** How long a stream may deliver nothing while this node is behind. */
  private stallMs(): number {
    return Math.max(streamStallMsMin, 2 * (this.o.leaseMs ?? leaseMsDefault));
  }

  private async closeData(): Promise<void> {
    this.engine = null;
    this.records = null;
    await this.host.closeData();
  }

  // ---- reports -------------------------------------------------------------

  private async report(): Promise<void> {
    const engine = this.engine;
    if (engine === null || engine.broken !== null) return;
    const s = await engine.stats();
    if (s.seqs === undefined) return; // closed meanwhile
    const seqs = Array.from({ length: this.partitionCount }, (_, p) => s.seqs[p] ?? 0);
    let applied = 0;
    if (this.follower !== null) {
      applied = this.follower.appliedStreamSeq;
      const info = await this.link.jsm.streams.info(this.link.names.stream);
      if (this.follower?.giveUpIfStalled(info.state.last_seq, this.stallMs())) return;
      this.lagMs =
        applied >= info.state.last_seq
          ? 0
          : Math.max(0, Date.now() - this.follower.appliedPublishMs);
      const leaderReport = this.leader === null ? null : await this.reportOf(this.leader.node);
      for (let p = 0; p < this.partitionCount; p++) {
        const behind = Math.max(0, (leaderReport?.seqs[p] ?? seqs[p]!) - seqs[p]!);
        this.m.lagEvents.set({ partition: String(p) }, behind);
        this.m.partitionLagMs.set({ partition: String(p) }, behind > 0 ? this.lagMs : 0);
      }
    } else {
      this.lagMs = 0;
      for (let p = 0; p < this.partitionCount; p++) {
        this.m.lagEvents.set({ partition: String(p) }, 0);
        this.m.partitionLagMs.set({ partition: String(p) }, 0);
      }
    }
    this.m.lagMs.set(this.lagMs);
    this.m.leader.set(this.role === "leader" ? 1 : 0);
    const report: NodeReport = {
      node: this.o.node,
      role: this.role,
      ...this.o.advertise,
      pid: process.pid,
      host: hostname(),
      seqs,
      appliedStreamSeq: applied,
      lagMs: this.lagMs,
      updateTimeMs: Date.now(),
    };
    await this.link.kv.put(nodeReportKey(this.o.node), JSON.stringify(report));
  }

  private async reportOf(node: string): Promise<NodeReport | null> {
    const e = await this.link.kv.get(nodeReportKey(node));
    return e === null || e.operation !== "PUT" ? null : e.json<NodeReport>();
  }

  /** A leader's restart hints: each partition's last batch in the stream. */
  private async saveHints(): Promise<void> {
    const publisher = this.publisher;
    const engine = this.engine;
    if (publisher === null || engine === null || this.role !== "leader") return;
    const entries = hintsOf(publisher);
    if (entries.length > 0) await engine.coordinatorRecords.putMeta(entries).catch(() => undefined);
  }
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** Restart hints: each partition's last batch in the stream. */
function hintsOf(publisher: Publisher): [string, unknown][] {
  return [...publisher.batches].map(([p, pos]) => [positionKey.partition(p), pos]);
}

function clusterMetrics(registry: Registry) {
  const registers = [registry];
  return {
    lagEvents: new Gauge({
      name: "stockd_replication_lag_events",
      help: "Events the leader has journaled that this node has not applied, by partition",
      labelNames: ["partition"],
      registers,
    }),
    lagMs: new Gauge({
      name: "stockd_replication_lag_ms",
      help: "Age of the last applied message while behind the stream (0 when caught up)",
      registers,
    }),
    partitionLagMs: new Gauge({
      name: "stockd_replication_partition_lag_ms",
      help: "By partition: the node's lag in ms where the partition is behind its leader, else 0",
      labelNames: ["partition"],
      registers,
    }),
    renewals: new Counter({
      name: "stockd_lease_renewals_total",
      help: "Lease renewal rounds that succeeded",
      registers,
    }),
    takeovers: new Counter({
      name: "stockd_takeovers_total",
      help: "Times this node took the leases over and started leading",
      registers,
    }),
    followerRestarts: new Counter({
      name: "stockd_follower_restarts_total",
      help: "Times this node gave following up (its stream consumer stalled or failed) and followed again with a new consumer",
      registers,
    }),
    leader: new Gauge({ name: "stockd_leader", help: "1 while this node leads", registers }),
    publishSeconds: new Histogram({
      name: "stockd_replication_publish_seconds",
      help: "Time from publishing a write to JetStream's acknowledgement",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
      registers,
    }),
  };
}
