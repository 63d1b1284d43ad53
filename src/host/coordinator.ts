import {
  ErrorCode,
  type Failure,
  type FulfilHold,
  type FulfilResult,
  fail,
  type HoldView,
  type Line,
  outOfStock,
  type ReleaseResult,
  type ReserveResult,
  type ReserveStock,
  sameLines,
} from "../engine/index.ts";
import type { Store } from "../persistence/index.ts";
import { Op } from "./protocol.ts";

// The coordinator of reservations whose lines sit in several partitions
// (DESIGN.md, "Reservations that span partitions"): prepare in every
// partition, make the decision durable, then confirm; presumed abort at
// start-up. Settling (fulfil or release) pins every part first, records the
// decision, then applies it, so a reservation is never half fulfilled and
// half expired.

export interface GroupMember {
  holdId: number;
  partition: number;
  /** Indexes into the reservation's lines held by this member, in order. */
  lineIndexes: number[];
}

export type Settlement = { kind: "FULFIL"; quantities: number[] } | { kind: "RELEASE" };

/** A reservation spanning partitions, as stored (key `g:<groupId>`). */
export interface GroupRecord {
  groupId: number;
  requestId: string;
  timeMs: number;
  expireTimeMs: number;
  lines: Line[];
  members: GroupMember[];
  settlement: Settlement | null;
}

/** A remembered refusal of a keyed reservation (key `r:<requestId>`). */
interface RefusalRecord {
  requestId: string;
  timeMs: number;
  lineIndex: number;
  available: number;
  lines: Line[];
}

type Send = (op: Op, arg: unknown) => Promise<unknown>;

interface Ok {
  ok: true;
}
type Answer = (Ok & Record<string, unknown>) | Failure;

export interface CoordinatorConfig {
  holdDurationMs: number;
  idempotencyWindowMs: number;
}

export class Coordinator {
  /** Every member hold id (the group id is one of them) -> its group. */
  private readonly groups = new Map<number, GroupRecord>();
  private readonly byRequest = new Map<string, GroupRecord | RefusalRecord>();
  /** Operations on one group run one at a time. */
  private readonly locks = new Map<number, Promise<unknown>>();
  private readonly requestsInFlight = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: Store,
    private readonly send: Send,
    private readonly now: () => number,
    private readonly config: CoordinatorConfig,
    /** A decision's write failed: whether it is durable is unknown (a
     * replicated write may be stored though unacknowledged), so this
     * process must stop answering and let recovery decide from what is
     * durable (presumed abort, or the decision found). */
    private readonly journalFailed: (why: string) => void,
  ) {
    for (const { value } of store.coordinatorRecords("g:")) this.index(value as GroupRecord);
    for (const { value } of store.coordinatorRecords("r:")) {
      const r = value as RefusalRecord;
      this.byRequest.set(r.requestId, r);
    }
  }

  get groupCount(): number {
    return new Set(this.groups.values()).size;
  }

  isGroup(holdId: number): boolean {
    return this.groups.has(holdId);
  }

  /**
   * Start-up: prepared holds with a durable decision are confirmed, the rest
   * aborted (presumed abort); decided settlements are completed; pinned
   * holds with no decision are unpinned.
   */
  async reconcile(pending: { holdId: number; prepared: boolean; pinned: boolean }[]): Promise<{
    confirmed: number;
    aborted: number;
    unpinned: number;
    settled: number;
  }> {
    const out = { confirmed: 0, aborted: 0, unpinned: 0, settled: 0 };
    const work: Promise<unknown>[] = [];
    for (const h of pending) {
      const group = this.groups.get(h.holdId);
      if (h.prepared) {
        if (group === undefined) out.aborted++;
        else out.confirmed++;
        work.push(this.send(group === undefined ? Op.Abort : Op.Confirm, { holdId: h.holdId }));
      }
      if (!h.pinned) continue;
      const member = group?.members.find((m) => m.holdId === h.holdId);
      if (group?.settlement != null && member !== undefined) {
        // The decision was durable before any part was settled: finish it.
        out.settled++;
        work.push(this.applyTo(member, group.settlement));
      } else {
        out.unpinned++;
        work.push(this.send(Op.Unpin, { holdId: h.holdId }));
      }
    }
    await Promise.all(work);
    return out;
  }

  async reserve(cmd: ReserveStock, byPartition: Map<number, number[]>): Promise<ReserveResult> {
    const requestId = cmd.requestId ?? "";
    if (requestId === "") return this.reserveOnce(cmd, byPartition);
    // One request id at a time: a retry racing the first call gets its answer.
    for (let busy = this.requestsInFlight.get(requestId); busy !== undefined; ) {
      await busy;
      busy = this.requestsInFlight.get(requestId);
    }
    const known = this.byRequest.get(requestId);
    if (known !== undefined && known.timeMs > this.now() - this.config.idempotencyWindowMs) {
      return answerOf(known, cmd.lines);
    }
    const run = this.reserveOnce(cmd, byPartition);
    this.requestsInFlight.set(requestId, run);
    try {
      return await run;
    } finally {
      this.requestsInFlight.delete(requestId);
    }
  }

  private async reserveOnce(
    cmd: ReserveStock,
    byPartition: Map<number, number[]>,
  ): Promise<ReserveResult> {
    const timeMs = this.now();
    const expireTimeMs = timeMs + (cmd.holdDurationMs ?? this.config.holdDurationMs);
    const parts = [...byPartition].sort((a, b) => a[0] - b[0]);
    const prepared = (await Promise.all(
      parts.map(([, idx]) =>
        this.send(Op.Prepare, { lines: idx.map((i) => cmd.lines[i]!), expireTimeMs }),
      ),
    )) as ReserveResult[];
    const refusal = firstFailure(prepared, parts);
    if (refusal !== null) {
      await Promise.all(
        prepared.map((r) => (r.ok ? this.send(Op.Abort, { holdId: r.reservation.holdId }) : null)),
      );
      const requestId = cmd.requestId ?? "";
      if (requestId !== "" && refusal.code === ErrorCode.OutOfStock) {
        const record: RefusalRecord = {
          requestId,
          timeMs,
          lineIndex: refusal.lineIndex ?? 0,
          available: refusal.available ?? 0,
          lines: cmd.lines,
        };
        await this.store.putCoordinatorRecords([[`r:${requestId}`, record]]);
        this.byRequest.set(requestId, record);
      }
      return refusal;
    }
    const members: GroupMember[] = parts.map(([partition, lineIndexes], k) => ({
      holdId: (prepared[k] as Extract<ReserveResult, { ok: true }>).reservation.holdId,
      partition,
      lineIndexes,
    }));
    const group: GroupRecord = {
      groupId: members[0]!.holdId,
      requestId: cmd.requestId ?? "",
      timeMs,
      expireTimeMs,
      lines: cmd.lines.map((l) => ({
        productId: l.productId,
        warehouseId: l.warehouseId,
        quantity: l.quantity,
      })),
      members,
      settlement: null,
    };
    try {
      await this.store.putCoordinatorRecords([[`g:${group.groupId}`, group]]);
    } catch (err) {
      // Not aborted here: the decision may be durable all the same.
      return this.failed(err as Error);
    }
    this.index(group);
    // The decision is durable: the caller may hear "ok" now. Confirming is
    // journaled in each partition, in order before any later command on it.
    for (const m of members) void this.send(Op.Confirm, { holdId: m.holdId });
    return {
      ok: true,
      reservation: { holdId: group.groupId, expireTimeMs, lines: group.lines, replayed: false },
    };
  }

  /** Releases every part still open (parts that expired stay expired). */
  release(holdId: number): Promise<ReleaseResult> {
    const group = this.groups.get(holdId)!;
    return this.locked(group, async (): Promise<ReleaseResult> => {
      if (group.settlement !== null) return settledFailure(group);
      const r = await this.settleGroup(group, { kind: "RELEASE" }, false);
      return r.ok ? { ok: true, holdId: group.groupId } : r;
    });
  }

  /** Fulfils every part, or none when any part has ended (expired...). */
  fulfil(cmd: FulfilHold): Promise<FulfilResult> {
    const group = this.groups.get(cmd.holdId)!;
    return this.locked(group, async (): Promise<FulfilResult> => {
      if (group.settlement !== null) return settledFailure(group);
      const quantities = cmd.quantities ?? group.lines.map((l) => l.quantity);
      if (quantities.length !== group.lines.length) {
        return fail(
          ErrorCode.InvalidArgument,
          `quantities has ${quantities.length} entries; hold ${group.groupId} has ${group.lines.length} lines`,
        );
      }
      for (let i = 0; i < quantities.length; i++) {
        const held = group.lines[i]!.quantity;
        if (quantities[i]! > held) {
          return fail(
            ErrorCode.InvalidArgument,
            `quantities[${i}] is ${quantities[i]}; the line holds only ${held}`,
          );
        }
      }
      const r = await this.settleGroup(group, { kind: "FULFIL", quantities }, true);
      return r.ok ? { ok: true, holdId: group.groupId, quantities } : r;
    });
  }

  /**
   * Pins every part (a pinned hold cannot expire), makes the decision
   * durable, then applies it to the pinned parts. `strict`: any part that
   * cannot be pinned (it ended) unpins the rest and refuses the whole.
   */
  private async settleGroup(
    group: GroupRecord,
    settlement: Settlement,
    strict: boolean,
  ): Promise<Answer> {
    const pins = (await Promise.all(
      group.members.map((m) => this.send(Op.Pin, { holdId: m.holdId })),
    )) as Answer[];
    const refused = pins.find((r) => !r.ok) as Failure | undefined;
    const pinned = group.members.filter((_, k) => pins[k]!.ok);
    if (refused !== undefined && (strict || pinned.length === 0)) {
      await Promise.all(pinned.map((m) => this.send(Op.Unpin, { holdId: m.holdId })));
      return { ...refused, message: refused.message.replace(/^hold \d+/, `hold ${group.groupId}`) };
    }
    group.settlement = settlement;
    try {
      await this.store.putCoordinatorRecords([[`g:${group.groupId}`, group]]);
    } catch (err) {
      // Not unpinned here: the settlement may be durable all the same.
      return this.failed(err as Error);
    }
    const results = await Promise.all(pinned.map((m) => this.applyTo(m, settlement)));
    return (results.find((r) => !r.ok) as Failure | undefined) ?? { ok: true };
  }

  /** A decision's write failed: the outcome is left to recovery. */
  private failed(err: Error): Failure {
    const why = `coordinator journal failed: ${err.message}`;
    this.journalFailed(why);
    return fail(ErrorCode.Unavailable, `${why} (the outcome is decided at recovery)`);
  }

  private applyTo(m: GroupMember, s: Settlement): Promise<Answer> {
    return (
      s.kind === "RELEASE"
        ? this.send(Op.Release, { holdId: m.holdId })
        : this.send(Op.Fulfil, {
            holdId: m.holdId,
            quantities: m.lineIndexes.map((i) => s.quantities[i]!),
          })
    ) as Promise<Answer>;
  }

  /** Each part's own view, in partition order. */
  async parts(holdId: number): Promise<(HoldView | null)[]> {
    const group = this.groups.get(holdId)!;
    const views = (await Promise.all(
      group.members.map((m) => this.send(Op.Hold, { holdId: m.holdId })),
    )) as { ok: true; hold: HoldView | null }[];
    return views.map((v) => v.hold);
  }

  /** The group's view: open while every part is open, else how it ended. */
  async hold(holdId: number): Promise<HoldView | null> {
    const group = this.groups.get(holdId)!;
    const parts = await this.parts(holdId);
    const ended = parts.find((h) => h === null || h.status !== "OPEN");
    if (ended !== undefined) return ended === null ? null : { ...ended, holdId: group.groupId };
    const open = parts as Extract<HoldView, { status: "OPEN" }>[];
    return {
      holdId: group.groupId,
      status: "OPEN",
      expireTimeMs: group.expireTimeMs,
      requestId: group.requestId,
      lines: group.lines,
      prepared: open.some((h) => h.prepared),
      pinned: open.every((h) => h.pinned),
    };
  }

  /** Forgets groups and refusals older than the idempotency window past
   * their deadline. */
  async prune(): Promise<number> {
    const horizon = this.now() - this.config.idempotencyWindowMs;
    const keys: string[] = [];
    for (const group of new Set(this.groups.values())) {
      if (Math.max(group.expireTimeMs, group.timeMs) > horizon) continue;
      keys.push(`g:${group.groupId}`);
      for (const m of group.members) this.groups.delete(m.holdId);
      if (this.byRequest.get(group.requestId) === group) this.byRequest.delete(group.requestId);
    }
    for (const [requestId, r] of this.byRequest) {
      if (!("members" in r) && r.timeMs <= horizon) {
        keys.push(`r:${requestId}`);
        this.byRequest.delete(requestId);
      }
    }
    if (keys.length > 0) await this.store.removeCoordinatorRecords(keys);
    return keys.length;
  }

  private index(group: GroupRecord): void {
    for (const m of group.members) this.groups.set(m.holdId, group);
    if (group.requestId !== "") this.byRequest.set(group.requestId, group);
  }

  private locked<T>(group: GroupRecord, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(group.groupId) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(group.groupId, tail);
    void tail.then(() => {
      if (this.locks.get(group.groupId) === tail) this.locks.delete(group.groupId);
    });
    return run;
  }
}

/** The refusal with the lowest line index, in the caller's numbering. */
function firstFailure(results: ReserveResult[], parts: [number, number[]][]): Failure | null {
  let best: Failure | null = null;
  results.forEach((r, k) => {
    if (r.ok) return;
    const global = r.lineIndex === undefined ? undefined : parts[k]![1][r.lineIndex];
    const f: Failure =
      global === undefined
        ? r
        : { ...r, lineIndex: global, message: r.message.replace(/^line \d+/, `line ${global}`) };
    if (
      best === null ||
      (f.lineIndex ?? Number.MAX_SAFE_INTEGER) < (best.lineIndex ?? Number.MAX_SAFE_INTEGER)
    ) {
      best = f;
    }
  });
  return best;
}

function settledFailure(group: GroupRecord): Failure {
  return group.settlement!.kind === "FULFIL"
    ? fail(ErrorCode.HoldFulfilled, `hold ${group.groupId} was already fulfilled`)
    : fail(ErrorCode.HoldReleased, `hold ${group.groupId} was already released`);
}

function answerOf(known: GroupRecord | RefusalRecord, lines: Line[]): ReserveResult {
  if (!sameLines(known.lines, lines)) {
    return fail(
      ErrorCode.RequestIdReused,
      `request id ${known.requestId} was first used for other lines`,
    );
  }
  if ("members" in known) {
    return {
      ok: true,
      reservation: {
        holdId: known.groupId,
        expireTimeMs: known.expireTimeMs,
        lines: known.lines,
        replayed: true,
      },
    };
  }
  return outOfStock(known.lineIndex, known.available, lines[known.lineIndex] ?? lines[0]!);
}
