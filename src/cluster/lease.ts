import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { type ClusterLink, refusedAsNotLast } from "./connection.ts";
import { gatewayLeaseKey, partitionLeaseKey } from "./names.ts";

/** What a lease key holds: who leads and where to reach it. */
export interface LeaseValue {
  node: string;
  http: string;
  grpc: string;
  /** The holder's wall clock at the renewal, for operators only: nothing
   * decides by comparing clocks of two machines. */
  renewTimeMs: number;
  /** Random per process: a renewal found stored whose answer was lost is
   * known for this process's own (absent in values of older versions). */
  incarnation?: string;
}

interface Observed {
  revision: number;
  /** This node's monotonic time when it first saw this revision. */
  seenAtMs: number;
}

export interface LeaseOptions {
  link: ClusterLink;
  partitionCount: number;
  leaseMs: number;
  /** Where this node serves (written into its leases). */
  self: Omit<LeaseValue, "renewTimeMs" | "incarnation">;
  logger: Logger;
  /** Told of each renewal round's result (metrics). */
  onRenew?: (ok: boolean) => void;
}

const now = () => performance.now();

/**
 * Leases in the cluster's key-value bucket, one per partition and one for
 * the gateway, taken and renewed by compare-and-set on the key's revision.
 *
 * Timing without trusting clocks across machines: a follower counts a
 * lease free only after it has seen the same revision for `leaseMs` on its
 * own clock, which starts after the holder sent that renewal; the holder
 * counts its lease valid only until `leaseMs - margin` after it *sent* its
 * last successful renewal. So the holder stops acknowledging before any
 * follower may take over.
 */
export class Leases {
  private readonly keys: string[];
  private readonly observed = new Map<string, Observed>();
  private held: Map<string, number> | null = null;
  /** Monotonic time until which this node's leases hold. */
  private validUntilMs = 0;
  private readonly incarnation = randomUUID();
  renewals = 0;

  constructor(private readonly o: LeaseOptions) {
    this.keys = [gatewayLeaseKey];
    for (let p = 0; p < o.partitionCount; p++) this.keys.push(partitionLeaseKey(p));
  }

  /** Margin kept between the holder's end and the followers' start. */
  get marginMs(): number {
    return Math.max(250, Math.floor(this.o.leaseMs / 5));
  }

  get leading(): boolean {
    return this.held !== null;
  }

  /** Null while this node holds every lease and may acknowledge, else why not. */
  fenced(): string | null {
    if (this.held === null) return "this node holds no lease";
    if (now() >= this.validUntilMs) return "this node's lease ran out before it could renew it";
    return null;
  }

  /** Each partition's epoch (its lease key's revision at takeover). */
  epochs(): { partitions: number[]; gateway: number } {
    const held = this.held;
    if (held === null) throw new Error("no lease held");
    return {
      gateway: held.get(gatewayLeaseKey)!,
      partitions: this.keys.slice(1).map((k) => held.get(k)!),
    };
  }

  /** Reads every lease; returns the current leader (if any holds the
   * gateway lease) and whether every lease is free to take. */
  async observe(): Promise<{ leader: LeaseValue | null; free: boolean }> {
    const t = now();
    let free = true;
    let leader: LeaseValue | null = null;
    const entries = await Promise.all(this.keys.map((k) => this.o.link.kv.get(k)));
    entries.forEach((e, i) => {
      const key = this.keys[i]!;
      const revision = e?.revision ?? 0;
      const value = e !== null && e.operation === "PUT" ? e.json<LeaseValue>() : null;
      const before = this.observed.get(key);
      if (before === undefined || before.revision !== revision) {
        this.observed.set(key, { revision, seenAtMs: t });
      }
      const seen = this.observed.get(key)!;
      const expired = value === null || t - seen.seenAtMs >= this.o.leaseMs;
      if (!expired) free = false;
      if (key === gatewayLeaseKey && !expired) leader = value;
    });
    return { leader, free };
  }

  /** Takes every lease by compare-and-set on the revisions observed. True
   * when all were taken; otherwise another node was faster and this one
   * holds nothing it can use (what it took expires on its own). */
  async take(): Promise<boolean> {
    const sent = now();
    const taken = new Map<string, number>();
    const value = this.value();
    try {
      await Promise.all(
        this.keys.map(async (key) => {
          const seen = this.observed.get(key);
          const revision =
            seen === undefined || seen.revision === 0
              ? await this.o.link.kv.create(key, value)
              : await this.o.link.kv.update(key, value, seen.revision);
          taken.set(key, revision);
          this.observed.set(key, { revision, seenAtMs: now() });
        }),
      );
    } catch (err) {
      this.o.logger.info(
        { err: (err as Error).message },
        "leases not taken (another node was faster, or NATS did not answer)",
      );
      return false;
    }
    this.held = taken;
    this.validUntilMs = sent + this.o.leaseMs - this.marginMs;
    return true;
  }

  /**
   * Renews every lease held. False when another node took one (a renewal
   * refused by compare-and-set): then this node no longer leads, and
   * `fenced()` says so from now on. A renewal NATS did not answer (a
   * server or a stream leader lost for a moment) keeps the leases: they
   * hold until `leaseMs - margin` after the last renewal that succeeded,
   * and the next tick tries again. So a NATS hiccup shorter than a lease
   * costs no failover, and a longer one fences this node until it renews
   * or learns that another node took over.
   */
  async renew(): Promise<boolean> {
    const held = this.held;
    if (held === null) return false;
    const sent = now();
    const value = this.value();
    const keys = [...held.keys()];
    const results = await Promise.allSettled(
      keys.map((key) => this.update(key, value, held.get(key)!)),
    );
    if (this.held !== held) return false;
    const failures: Error[] = [];
    results.forEach((r, i) => {
      if (r.status === "fulfilled") held.set(keys[i]!, r.value);
      else failures.push(r.reason as Error);
    });
    const refused = failures.find(refusedAsNotLast);
    if (refused !== undefined) {
      this.o.logger.warn({ err: refused.message }, "lease taken by another node: stepping down");
      this.o.onRenew?.(false);
      this.drop();
      return false;
    }
    if (failures.length > 0) {
      this.o.logger.warn(
        { err: failures[0]!.message, validForMs: Math.round(this.validUntilMs - now()) },
        "lease renewal failed: trying again while the lease holds",
      );
      this.o.onRenew?.(false);
      return true;
    }
    this.validUntilMs = sent + this.o.leaseMs - this.marginMs;
    this.renewals++;
    this.o.onRenew?.(true);
    return true;
  }

  /** One key's compare-and-set. A refusal whose key holds a later value
   * written by this very process is an earlier renewal that was stored
   * while its answer was lost: that revision is this node's, not another
   * node's takeover. */
  private async update(key: string, value: string, revision: number): Promise<number> {
    try {
      return await this.o.link.kv.update(key, value, revision);
    } catch (err) {
      if (!refusedAsNotLast(err)) throw err;
      const e = await this.o.link.kv.get(key).catch(() => null);
      const mine =
        e !== null &&
        e.operation === "PUT" &&
        e.revision > revision &&
        e.json<LeaseValue>().incarnation === this.incarnation;
      if (!mine) throw err;
      return await this.o.link.kv.update(key, value, e.revision);
    }
  }

  /** Deletes the lease keys this node wrote last (after a clean stop):
   * followers see them free at once. */
  async release(): Promise<void> {
    for (const key of this.keys) {
      const e = await this.o.link.kv.get(key);
      if (e?.operation === "PUT" && e.json<LeaseValue>().node === this.o.self.node) {
        await this.o.link.kv.delete(key, { previousSeq: e.revision });
      }
    }
  }

  /** Forgets the leases held (they expire for the others in `leaseMs`). */
  drop(): void {
    this.held = null;
    this.validUntilMs = 0;
  }

  /** What this node writes into each lease it takes or renews. */
  private value(): string {
    return JSON.stringify({
      ...this.o.self,
      renewTimeMs: Date.now(),
      incarnation: this.incarnation,
    } satisfies LeaseValue);
  }
}
