import { Fifo, NumberRing } from "./fifo.ts";
import { holdIdOf, partitionOf } from "./ids.ts";
import {
  closedHoldCountMax,
  expireCountMaxPerPulse,
  holdCountMax,
  holdDurationMsDefault,
  idempotencyWindowMsDefault,
  partitionCountMax,
  positionCountMax,
  requestCountMax,
  unitTotalMax,
  wheelTickMsDefault,
} from "./limits.ts";
import { copyLines, outOfStock, sameLines } from "./lines.ts";
import { Position } from "./position.ts";
import { PositionIndex } from "./positions.ts";
import { SeqTable } from "./seq_table.ts";
import {
  type AdjustResult,
  type AdjustStock,
  ErrorCode,
  type Event,
  EventType,
  type FulfilHold,
  type FulfilResult,
  fail,
  type HoldMarked,
  HoldOutcome,
  type HoldView,
  type Line,
  type PositionView,
  type PrepareHold,
  type ReceiveResult,
  type ReceiveStock,
  type ReleaseHold,
  ReleaseReason,
  type ReleaseResult,
  type ReserveResult,
  type ReserveStock,
  type StockReserved,
} from "./types.ts";
import {
  validateAdjust,
  validateFulfil,
  validatePrepare,
  validateReceive,
  validateRelease,
  validateReserve,
} from "./validate.ts";
import { TimerWheel, type WheelEntry } from "./wheel.ts";

/** Bits of `Hold.flags`. */
export const HoldFlag = {
  /** Part of a reservation spanning partitions, awaiting the decision. */
  Prepared: 1,
  /** Pinned while an order settles: out of the timer wheel. */
  Pinned: 2,
} as const;

/** An open hold. Single-line holds (the common case) keep their line inline. */
export class Hold implements WheelEntry {
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  /** The wheel slot + 1 (0: not in the wheel) in the low 16 bits, the flags
   * above: one field instead of two, 8 bytes less per open hold. */
  private state = 0;
  constructor(
    /** The seq of the event that placed it: a small integer, cheap as a key. */
    readonly seq: number,
    readonly partition: number,
    public expireTimeMs: number,
    readonly requestId: string,
    readonly position: Position | Position[],
    readonly quantity: number | number[],
  ) {}

  get id(): number {
    return holdIdOf(this.seq, this.partition);
  }

  /** Slot index while scheduled, -1 when not in the wheel. */
  get wheelSlot(): number {
    return (this.state & 0xffff) - 1;
  }
  set wheelSlot(slot: number) {
    if (!(slot >= -1 && slot < 0xffff)) throw new Error(`hold: wheel slot ${slot} out of range`);
    this.state = (this.state & ~0xffff) | (slot + 1);
  }

  /** HoldFlag bits. */
  get flags(): number {
    return this.state >>> 16;
  }
  set flags(f: number) {
    this.state = (f << 16) | (this.state & 0xffff);
  }

  get lineCount(): number {
    return Array.isArray(this.position) ? this.position.length : 1;
  }
  positionAt(i: number): Position {
    const p = this.position;
    return Array.isArray(p) ? p[i]! : p;
  }
  quantityAt(i: number): number {
    const q = this.quantity;
    return Array.isArray(q) ? q[i]! : q;
  }
  lines(): Line[] {
    const out: Line[] = [];
    for (let i = 0; i < this.lineCount; i++) {
      const p = this.positionAt(i);
      out.push({
        productId: p.productId,
        warehouseId: p.warehouseId,
        quantity: this.quantityAt(i),
      });
    }
    return out;
  }
}

/** The first answer to a request id, remembered for the idempotency window. */
export interface RequestRecord {
  requestId: string;
  timeMs: number;
  /** 0 when the request was refused. */
  holdId: number;
  expireTimeMs: number;
  lines: Line[];
  lineIndex: number;
  available: number;
}

/**
 * What the partition keeps of a request id in memory. A request that placed
 * a hold keeps a reference to that hold, whose lines and deadline are its
 * first answer (the hold outlives its closing for as long as the record):
 * no copy of the lines, ids or deadline per request. A refusal, or a held
 * request restored from a snapshot after its hold ended, keeps its record.
 */
class Remembered {
  constructor(
    readonly requestId: string,
    readonly timeMs: number,
    readonly hold: Hold | null,
    readonly record: RequestRecord | null,
  ) {}

  /** The record as snapshots and digests see it. */
  toRecord(): RequestRecord {
    const h = this.hold;
    if (h === null) return this.record!;
    return {
      requestId: this.requestId,
      timeMs: this.timeMs,
      holdId: h.id,
      expireTimeMs: h.expireTimeMs,
      lines: h.lines(),
      lineIndex: 0,
      available: 0,
    };
  }
}

export interface PartitionConfig {
  partitionCount: number;
  holdDurationMs?: number;
  idempotencyWindowMs?: number;
  wheelTickMs?: number;
  /** Check the whole partition's invariants after every event (tests). */
  paranoid?: boolean;
}

/**
 * A partition: the actors (SKU positions) whose product hashes here, their
 * open holds, and the timer wheel of those holds. Single-threaded; no I/O.
 *
 * Every change goes through `apply(event)`: commands decide, emit events and
 * apply them, so the state is a pure function of the journal and replay uses
 * the very same code. Emitted events collect in `outbox` for the host to
 * journal; a command's answer may be released only once they are durable.
 */
export { Position };

export class Partition {
  readonly positions = new PositionIndex();
  /** Open holds by seq (the hold id is seq * 1024 + partition). */
  readonly holds = new Map<number, Hold>();
  /** Recently ended holds: seq -> closeTimeMs * 8 + outcome; their seqs and
   * close times in close order, for forgetting past the window. */
  private readonly closedHolds = new SeqTable();
  private readonly closedOrder = new NumberRing();
  private readonly closedTimes = new NumberRing();
  private readonly requests = new Map<string, Remembered>();
  private readonly requestOrder = new Fifo<Remembered>();
  readonly wheel: TimerWheel<Hold>;
  readonly partitionCount: number;
  readonly holdDurationMs: number;
  readonly idempotencyWindowMs: number;
  private readonly paranoid: boolean;

  /** Sequence number of the last applied event. */
  seq = 0;
  /** Time of the last applied event; event times never go backwards. */
  timeMs = 0;
  /** Events emitted and applied but not yet taken by the host. */
  outbox: Event[] = [];
  /** The position a command just looked up, for its event's apply(). */
  private positionHint: Position | null = null;

  constructor(
    readonly id: number,
    config: PartitionConfig,
  ) {
    this.partitionCount = config.partitionCount;
    this.holdDurationMs = config.holdDurationMs ?? holdDurationMsDefault;
    this.idempotencyWindowMs = config.idempotencyWindowMs ?? idempotencyWindowMsDefault;
    this.paranoid = config.paranoid ?? false;
    this.wheel = new TimerWheel<Hold>(config.wheelTickMs ?? wheelTickMsDefault, 0);
  }

  // ---- commands -----------------------------------------------------------

  receiveStock(cmd: ReceiveStock, nowMs: number): ReceiveResult {
    const invalid = validateReceive(cmd) ?? this.foreignProduct(cmd.productId);
    if (invalid !== null) return invalid;
    const known = this.positions.get(cmd.productId, cmd.warehouseId);
    if (known === undefined && this.positions.size >= positionCountMax) {
      return fail(ErrorCode.CapacityExceeded, "partition holds its maximum of SKU positions");
    }
    if (
      known !== undefined &&
      (known.received + cmd.quantity > unitTotalMax ||
        known.available + known.reserved + cmd.quantity > unitTotalMax)
    ) {
      return fail(ErrorCode.CapacityExceeded, `position totals may not pass ${unitTotalMax} units`);
    }
    this.emit({
      type: EventType.StockReceived,
      seq: this.seq + 1,
      timeMs: this.eventTime(nowMs),
      productId: cmd.productId,
      warehouseId: cmd.warehouseId,
      quantity: cmd.quantity,
    });
    return { ok: true, position: viewOf(this.positions.get(cmd.productId, cmd.warehouseId)!) };
  }

  adjustStock(cmd: AdjustStock, nowMs: number): AdjustResult {
    const invalid = validateAdjust(cmd) ?? this.foreignProduct(cmd.productId);
    if (invalid !== null) return invalid;
    const position = this.positions.get(cmd.productId, cmd.warehouseId);
    const available = position?.available ?? 0;
    if (available + cmd.delta < 0) {
      return fail(
        ErrorCode.InsufficientStock,
        `cannot adjust ${cmd.productId} in ${cmd.warehouseId} by ${cmd.delta}: only ${available} available`,
        { available },
      );
    }
    if (position === undefined && this.positions.size >= positionCountMax) {
      return fail(ErrorCode.CapacityExceeded, "partition holds its maximum of SKU positions");
    }
    if (
      position !== undefined &&
      (Math.abs(position.adjusted + cmd.delta) > unitTotalMax ||
        position.available + position.reserved + cmd.delta > unitTotalMax)
    ) {
      return fail(ErrorCode.CapacityExceeded, `position totals may not pass ${unitTotalMax} units`);
    }
    this.emit({
      type: EventType.StockAdjusted,
      seq: this.seq + 1,
      timeMs: this.eventTime(nowMs),
      productId: cmd.productId,
      warehouseId: cmd.warehouseId,
      delta: cmd.delta,
      reason: cmd.reason,
    });
    return { ok: true, position: viewOf(this.positions.get(cmd.productId, cmd.warehouseId)!) };
  }

  /**
   * `fromHost`: the engine validated `cmd` and routed it to this partition,
   * and the host decoded it for this call alone. Validation is not repeated,
   * and its lines may become the event's and the answer may share them: no
   * copies on the hot path. Any other caller leaves it false.
   */
  reserve(cmd: ReserveStock, nowMs: number, fromHost = false): ReserveResult {
    if (!fromHost) {
      const invalid = validateReserve(cmd);
      if (invalid !== null) return invalid;
      for (const line of cmd.lines) {
        const foreign = this.foreignProduct(line.productId);
        if (foreign !== null) return foreign;
      }
    }
    const requestId = cmd.requestId ?? "";
    if (requestId !== "") {
      const known = this.requests.get(requestId);
      // A record past the window is forgotten even if not yet purged (purging
      // happens only in apply(), so that replay purges exactly the same).
      if (known !== undefined && known.timeMs > this.eventTime(nowMs) - this.idempotencyWindowMs) {
        return answerOf(known, cmd.lines);
      }
    }
    for (let i = 0; i < cmd.lines.length; i++) {
      const line = cmd.lines[i]!;
      const position = this.positions.get(line.productId, line.warehouseId);
      const available = position?.available ?? 0;
      if (available < line.quantity) return this.refuse(requestId, i, available, cmd.lines, nowMs);
      // apply() looks the position up again; spare it the key and the lookup.
      this.positionHint = position!;
    }
    if (this.holds.size >= holdCountMax) {
      return fail(ErrorCode.CapacityExceeded, "partition holds its maximum of open holds");
    }
    const seq = this.seq + 1;
    const timeMs = this.eventTime(nowMs);
    const event: StockReserved = {
      type: EventType.StockReserved,
      seq,
      timeMs,
      holdId: holdIdOf(seq, this.id),
      expireTimeMs: timeMs + (cmd.holdDurationMs ?? this.holdDurationMs),
      requestId,
      lines: fromHost ? cmd.lines : copyLines(cmd.lines),
      prepared: false,
    };
    this.emit(event);
    return {
      ok: true,
      reservation: {
        holdId: event.holdId,
        expireTimeMs: event.expireTimeMs,
        lines: fromHost ? event.lines : copyLines(event.lines),
        replayed: false,
      },
    };
  }

  /**
   * Prepares this partition's part of a reservation spanning partitions:
   * holds the lines (or refuses, changing nothing) with the coordinator's
   * absolute deadline. The hold stays prepared until `confirm` or `abort`.
   */
  prepare(cmd: PrepareHold, nowMs: number): ReserveResult {
    const invalid = validatePrepare(cmd);
    if (invalid !== null) return invalid;
    for (const line of cmd.lines) {
      const foreign = this.foreignProduct(line.productId);
      if (foreign !== null) return foreign;
    }
    for (let i = 0; i < cmd.lines.length; i++) {
      const line = cmd.lines[i]!;
      const position = this.positions.get(line.productId, line.warehouseId);
      const available = position?.available ?? 0;
      if (available < line.quantity) return outOfStock(i, available, line);
    }
    if (this.holds.size >= holdCountMax) {
      return fail(ErrorCode.CapacityExceeded, "partition holds its maximum of open holds");
    }
    const seq = this.seq + 1;
    const event: StockReserved = {
      type: EventType.StockReserved,
      seq,
      timeMs: this.eventTime(nowMs),
      holdId: holdIdOf(seq, this.id),
      expireTimeMs: cmd.expireTimeMs,
      requestId: "",
      lines: cmd.lines.map((l) => ({
        productId: l.productId,
        warehouseId: l.warehouseId,
        quantity: l.quantity,
      })),
      prepared: true,
    };
    this.emit(event);
    return {
      ok: true,
      reservation: {
        holdId: event.holdId,
        expireTimeMs: event.expireTimeMs,
        lines: copyLines(event.lines),
        replayed: false,
      },
    };
  }

  /** The coordinator's decision is durable: the prepared hold is kept. */
  confirm(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.mark(
      cmd,
      nowMs,
      EventType.HoldConfirmed,
      (h) => (h.flags & HoldFlag.Prepared) !== 0,
    );
  }

  /** Pins a hold: it cannot expire until unpinned (an order settling). */
  pin(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.mark(cmd, nowMs, EventType.HoldPinned, (h) => (h.flags & HoldFlag.Pinned) === 0);
  }

  /** Unpins a hold: it expires at its deadline again (at once if passed). */
  unpin(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.mark(cmd, nowMs, EventType.HoldUnpinned, (h) => (h.flags & HoldFlag.Pinned) !== 0);
  }

  /** Releases a prepared hold whose reservation was aborted. */
  abort(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.end(cmd, nowMs, ReleaseReason.Aborted);
  }

  /** Emits a marking event when `needed` says the hold lacks it; ok either way. */
  private mark(
    cmd: ReleaseHold,
    nowMs: number,
    type: HoldMarked["type"],
    needed: (h: Hold) => boolean,
  ): ReleaseResult {
    const invalid = validateRelease(cmd);
    if (invalid !== null) return invalid;
    const hold = this.holds.get(this.keyOf(cmd.holdId));
    if (hold === undefined) return this.holdGone(cmd.holdId, nowMs);
    if (needed(hold)) {
      this.emit({ type, seq: this.seq + 1, timeMs: this.eventTime(nowMs), holdId: hold.id });
    }
    return { ok: true, holdId: hold.id };
  }

  /** Holds awaiting the coordinator: prepared or pinned (start-up). */
  pendingHolds(): { holdId: number; prepared: boolean; pinned: boolean }[] {
    const out = [];
    for (const h of this.holds.values()) {
      if (h.flags === 0) continue;
      out.push({
        holdId: h.id,
        prepared: (h.flags & HoldFlag.Prepared) !== 0,
        pinned: (h.flags & HoldFlag.Pinned) !== 0,
      });
    }
    return out;
  }

  release(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.end(cmd, nowMs, ReleaseReason.Released);
  }

  private end(cmd: ReleaseHold, nowMs: number, reason: ReleaseReason): ReleaseResult {
    const invalid = validateRelease(cmd);
    if (invalid !== null) return invalid;
    const hold = this.holds.get(this.keyOf(cmd.holdId));
    if (hold === undefined) return this.holdGone(cmd.holdId, nowMs);
    this.emit({
      type: EventType.HoldReleased,
      seq: this.seq + 1,
      timeMs: this.eventTime(nowMs),
      holdId: hold.id,
      reason,
    });
    return { ok: true, holdId: hold.id };
  }

  fulfil(cmd: FulfilHold, nowMs: number): FulfilResult {
    const invalid = validateFulfil(cmd);
    if (invalid !== null) return invalid;
    const hold = this.holds.get(this.keyOf(cmd.holdId));
    if (hold === undefined) return this.holdGone(cmd.holdId, nowMs);
    const quantities: number[] = [];
    for (let i = 0; i < hold.lineCount; i++) quantities.push(hold.quantityAt(i));
    if (cmd.quantities !== undefined) {
      if (cmd.quantities.length !== hold.lineCount) {
        return fail(
          ErrorCode.InvalidArgument,
          `quantities has ${cmd.quantities.length} entries; hold ${hold.id} has ${hold.lineCount} lines`,
        );
      }
      for (let i = 0; i < hold.lineCount; i++) {
        const q = cmd.quantities[i]!;
        if (q > quantities[i]!) {
          return fail(
            ErrorCode.InvalidArgument,
            `quantities[${i}] is ${q}; the line holds only ${quantities[i]}`,
          );
        }
        quantities[i] = q;
      }
    }
    this.emit({
      type: EventType.HoldFulfilled,
      seq: this.seq + 1,
      timeMs: this.eventTime(nowMs),
      holdId: hold.id,
      quantities,
    });
    return { ok: true, holdId: hold.id, quantities: [...quantities] };
  }

  /**
   * The expiry pulse: releases (reason EXPIRED) at most `countMax` holds whose
   * deadline is at or before `nowMs`. Returns how many it expired; when that
   * equals `countMax` there may be more, for the next pulse.
   */
  expire(nowMs: number, countMax: number = expireCountMaxPerPulse): number {
    const due = this.wheel.due(nowMs, countMax);
    // `due` took the holds out of the wheel; apply() expects every open,
    // unpinned hold scheduled, so put them all back before the first event.
    for (const hold of due) this.wheel.schedule(hold);
    for (const hold of due) {
      this.emit({
        type: EventType.HoldReleased,
        seq: this.seq + 1,
        timeMs: this.eventTime(nowMs),
        holdId: hold.id,
        reason: ReleaseReason.Expired,
      });
    }
    return due.length;
  }

  /** Takes the events emitted since the last call. */
  takeOutbox(): Event[] {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  // ---- the one state transition -------------------------------------------

  apply(event: Event): void {
    if (event.seq !== this.seq + 1) {
      throw new Error(`partition ${this.id}: event seq ${event.seq} after ${this.seq}`);
    }
    if (event.timeMs < this.timeMs) {
      throw new Error(`partition ${this.id}: event ${event.seq} goes back in time`);
    }
    this.seq = event.seq;
    this.timeMs = event.timeMs;
    switch (event.type) {
      case EventType.StockReceived: {
        const p = this.positionFor(event.productId, event.warehouseId);
        p.available += event.quantity;
        p.received += event.quantity;
        checkPosition(p);
        break;
      }
      case EventType.StockAdjusted: {
        const p = this.positionFor(event.productId, event.warehouseId);
        p.available += event.delta;
        p.adjusted += event.delta;
        checkPosition(p);
        break;
      }
      case EventType.StockReserved:
        this.applyReserved(event, true);
        break;
      case EventType.ReservationRefused:
        this.remember({
          requestId: event.requestId,
          timeMs: event.timeMs,
          holdId: 0,
          expireTimeMs: 0,
          lines: event.lines,
          lineIndex: event.lineIndex,
          available: event.available,
        });
        break;
      case EventType.HoldReleased: {
        const hold = this.openHold(event.holdId, event.seq);
        for (let i = 0; i < hold.lineCount; i++) {
          const p = hold.positionAt(i);
          const q = hold.quantityAt(i);
          p.reserved -= q;
          p.available += q;
          checkPosition(p);
        }
        this.close(hold, outcomeOf(event.reason), event.timeMs);
        break;
      }
      case EventType.HoldConfirmed:
        this.openHold(event.holdId, event.seq).flags &= ~HoldFlag.Prepared;
        break;
      case EventType.HoldPinned: {
        const hold = this.openHold(event.holdId, event.seq);
        hold.flags |= HoldFlag.Pinned;
        this.wheel.cancel(hold);
        break;
      }
      case EventType.HoldUnpinned: {
        const hold = this.openHold(event.holdId, event.seq);
        hold.flags &= ~HoldFlag.Pinned;
        this.wheel.schedule(hold);
        break;
      }
      case EventType.HoldFulfilled: {
        const hold = this.openHold(event.holdId, event.seq);
        if (event.quantities.length !== hold.lineCount) {
          throw new Error(`partition ${this.id}: event ${event.seq} fulfils the wrong line count`);
        }
        for (let i = 0; i < hold.lineCount; i++) {
          const p = hold.positionAt(i);
          const q = hold.quantityAt(i);
          const f = event.quantities[i]!;
          if (!(f >= 0 && f <= q)) throw new Error(`partition ${this.id}: bad fulfil ${event.seq}`);
          p.reserved -= q;
          p.available += q - f;
          p.fulfilled += f;
          checkPosition(p);
        }
        this.close(hold, HoldOutcome.Fulfilled, event.timeMs);
        break;
      }
      default:
        throw new Error(`partition ${this.id}: unknown event type`);
    }
    this.forgetClosed(event.timeMs);
    this.forgetRequests(event.timeMs);
    if (this.paranoid) this.checkInvariants();
  }

  // ---- reads ---------------------------------------------------------------

  position(productId: string, warehouseId: string): PositionView | null {
    const p = this.positions.get(productId, warehouseId);
    return p === undefined ? null : viewOf(p);
  }

  /** An open hold, or how a recently ended one ended; null if unknown. */
  hold(holdId: number): HoldView | null {
    const h = this.holds.get(this.keyOf(holdId));
    if (h !== undefined) {
      return {
        holdId,
        status: "OPEN",
        expireTimeMs: h.expireTimeMs,
        requestId: h.requestId,
        lines: h.lines(),
        prepared: (h.flags & HoldFlag.Prepared) !== 0,
        pinned: (h.flags & HoldFlag.Pinned) !== 0,
      };
    }
    const closed = this.closedHolds.get(this.keyOf(holdId));
    if (closed === undefined) return null;
    return {
      holdId,
      status: outcomeNames[(closed % 8) as HoldOutcome],
      closeTimeMs: Math.floor(closed / 8),
    };
  }

  /** Checks every invariant of DESIGN.md over the whole partition. */
  checkInvariants(): void {
    const held = new Map<Position, number>();
    let pinned = 0;
    for (const hold of this.holds.values()) {
      const isPinned = (hold.flags & HoldFlag.Pinned) !== 0;
      if (isPinned) pinned++;
      if ((hold.wheelSlot === -1) !== isPinned) {
        throw new Error(`hold ${hold.id} is ${isPinned ? "pinned but in" : "not in"} the wheel`);
      }
      for (let i = 0; i < hold.lineCount; i++) {
        const p = hold.positionAt(i);
        held.set(p, (held.get(p) ?? 0) + hold.quantityAt(i));
      }
    }
    for (const p of this.positions.values()) {
      checkPosition(p);
      const sum = held.get(p) ?? 0;
      if (p.reserved !== sum) {
        throw new Error(
          `invariant: ${p.productId}@${p.warehouseId} reserved ${p.reserved} != open holds ${sum}`,
        );
      }
    }
    if (this.wheel.count !== this.holds.size - pinned) {
      throw new Error(
        `invariant: wheel has ${this.wheel.count} holds, partition ${this.holds.size - pinned} unpinned`,
      );
    }
  }

  // ---- internals -------------------------------------------------------------

  private emit(event: Event): void {
    this.apply(event);
    this.outbox.push(event);
  }

  private eventTime(nowMs: number): number {
    return Math.max(nowMs, this.timeMs);
  }

  private foreignProduct(productId: string) {
    const owner = partitionOf(productId, this.partitionCount);
    if (owner === this.id) return null;
    return fail(ErrorCode.InvalidArgument, `product ${productId} belongs to partition ${owner}`);
  }

  private refuse(
    requestId: string,
    lineIndex: number,
    available: number,
    lines: Line[],
    nowMs: number,
  ) {
    if (requestId !== "") {
      this.emit({
        type: EventType.ReservationRefused,
        seq: this.seq + 1,
        timeMs: this.eventTime(nowMs),
        requestId,
        lineIndex,
        available,
        lines: copyLines(lines),
      });
    }
    return outOfStock(lineIndex, available, lines[lineIndex]!);
  }

  private holdGone(holdId: number, nowMs: number): ReleaseResult & FulfilResult {
    const closed = this.closedHolds.get(this.keyOf(holdId));
    const horizon = this.eventTime(nowMs) - this.idempotencyWindowMs;
    if (closed === undefined || Math.floor(closed / 8) <= horizon) {
      return fail(ErrorCode.HoldNotFound, `hold ${holdId} not found`);
    }
    const outcome = closed % 8;
    const code =
      outcome === HoldOutcome.Released
        ? ErrorCode.HoldReleased
        : outcome === HoldOutcome.Expired
          ? ErrorCode.HoldExpired
          : outcome === HoldOutcome.Aborted
            ? ErrorCode.HoldAborted
            : ErrorCode.HoldFulfilled;
    const word = code.slice("HOLD_".length).toLowerCase();
    return fail(code, `hold ${holdId} was already ${word}`);
  }

  private positionFor(productId: string, warehouseId: string): Position {
    return this.positions.getOrAdd(productId, warehouseId);
  }

  private applyReserved(event: StockReserved, rememberRequest: boolean): void {
    const n = event.lines.length;
    if (n === 0) throw new Error(`partition ${this.id}: event ${event.seq} holds no line`);
    const key = this.keyOf(event.holdId);
    if (key < 0)
      throw new Error(`partition ${this.id}: hold ${event.holdId} is not of this partition`);
    let hold: Hold;
    if (n === 1) {
      // The common case: no arrays.
      const line = event.lines[0]!;
      const hint = this.positionHint;
      this.positionHint = null;
      const p =
        hint !== null && hint.productId === line.productId && hint.warehouseId === line.warehouseId
          ? hint
          : this.positionFor(line.productId, line.warehouseId);
      p.available -= line.quantity;
      p.reserved += line.quantity;
      checkPosition(p);
      hold = new Hold(key, this.id, event.expireTimeMs, event.requestId, p, line.quantity);
    } else {
      const positions: Position[] = [];
      const quantities: number[] = [];
      for (const line of event.lines) {
        const p = this.positionFor(line.productId, line.warehouseId);
        p.available -= line.quantity;
        p.reserved += line.quantity;
        checkPosition(p);
        positions.push(p);
        quantities.push(line.quantity);
      }
      hold = new Hold(key, this.id, event.expireTimeMs, event.requestId, positions, quantities);
    }
    if (this.holds.has(hold.seq)) throw new Error(`partition ${this.id}: hold ${hold.id} twice`);
    if (event.prepared) hold.flags = HoldFlag.Prepared;
    this.holds.set(hold.seq, hold);
    this.wheel.schedule(hold);
    if (rememberRequest && event.requestId !== "") {
      this.keep(new Remembered(event.requestId, event.timeMs, hold, null));
    }
  }

  private openHold(holdId: number, seq: number): Hold {
    const hold = this.holds.get(this.keyOf(holdId));
    if (hold === undefined)
      throw new Error(`partition ${this.id}: event ${seq} ends hold ${holdId}, not open`);
    return hold;
  }

  private close(hold: Hold, outcome: HoldOutcome, timeMs: number): void {
    this.wheel.cancel(hold);
    this.holds.delete(hold.seq);
    this.closedHolds.set(hold.seq, timeMs * 8 + outcome);
    this.closedOrder.push(hold.seq);
    this.closedTimes.push(timeMs);
  }

  /** Restores a remembered request (snapshot load; its hold, if still open,
   * restored before) or records a refusal. */
  remember(record: RequestRecord): void {
    if (record.holdId !== 0) {
      const open = this.holds.get(this.keyOf(record.holdId));
      if (open !== undefined) {
        if (open.expireTimeMs !== record.expireTimeMs || !sameLines(open.lines(), record.lines)) {
          throw new Error(
            `partition ${this.id}: request ${record.requestId} disagrees with hold ${record.holdId}`,
          );
        }
        this.keep(new Remembered(record.requestId, record.timeMs, open, null));
        return;
      }
    }
    this.keep(new Remembered(record.requestId, record.timeMs, null, record));
  }

  private keep(r: Remembered): void {
    const known = this.requests.get(r.requestId);
    if (known !== undefined && known.timeMs > r.timeMs - this.idempotencyWindowMs) {
      throw new Error(`partition ${this.id}: request ${r.requestId} answered twice`);
    }
    this.requests.set(r.requestId, r);
    this.requestOrder.push(r);
    while (this.requestOrder.length > requestCountMax) this.dropOldestRequest();
  }

  private dropOldestRequest(): void {
    const head = this.requestOrder.shift()!;
    // The id may since have been reused (after its window) by a newer record.
    if (this.requests.get(head.requestId) === head) this.requests.delete(head.requestId);
  }

  /** Restores an ended hold (snapshot load). */
  rememberClosed(holdId: number, outcome: HoldOutcome, closeTimeMs: number): void {
    const key = this.keyOf(holdId);
    this.closedHolds.set(key, closeTimeMs * 8 + outcome);
    this.closedOrder.push(key);
    this.closedTimes.push(closeTimeMs);
  }

  /** Restores an open hold (snapshot load; its request is restored apart). */
  restoreHold(event: StockReserved, pinned: boolean): void {
    this.applyReserved(event, false);
    if (pinned) {
      const hold = this.holds.get(this.keyOf(event.holdId))!;
      hold.flags |= HoldFlag.Pinned;
      this.wheel.cancel(hold);
    }
  }

  /** The position, created empty if new (snapshot load). */
  positionForRestore(productId: string, warehouseId: string): Position {
    return this.positionFor(productId, warehouseId);
  }

  /** Request ids leave memory once older than the window (or past the count
   * bound), judged by event time so that replay forgets exactly the same. */
  private forgetRequests(nowMs: number): void {
    const horizon = nowMs - this.idempotencyWindowMs;
    let head = this.requestOrder.peek();
    while (head !== undefined && head.timeMs <= horizon) {
      this.dropOldestRequest();
      head = this.requestOrder.peek();
    }
  }

  private forgetClosed(nowMs: number): void {
    const horizon = nowMs - this.idempotencyWindowMs;
    while (
      this.closedOrder.length > 0 &&
      (this.closedTimes.peek() <= horizon || this.closedOrder.length > closedHoldCountMax)
    ) {
      this.closedHolds.delete(this.closedOrder.shift());
      this.closedTimes.shift();
    }
  }

  /** The remembered requests, oldest first (snapshots). */
  requestsInOrder(): RequestRecord[] {
    return this.requestOrder.toArray().map((r) => r.toRecord());
  }

  /** The ended holds, oldest first (snapshots). */
  closedInOrder(): { holdId: number; outcome: HoldOutcome; closeTimeMs: number }[] {
    return this.closedOrder.toArray().map((seq) => {
      const packed = this.closedHolds.get(seq)!;
      return {
        holdId: holdIdOf(seq, this.id),
        outcome: (packed % 8) as HoldOutcome,
        closeTimeMs: Math.floor(packed / 8),
      };
    });
  }

  /** Every position, sorted by (product, warehouse): snapshots, digests. */
  positionsInOrder(): Position[] {
    return [...this.positions.values()].sort((a, b) =>
      a.productId === b.productId
        ? compare(a.warehouseId, b.warehouseId)
        : compare(a.productId, b.productId),
    );
  }

  /** Every open hold, sorted by id: snapshots, digests. */
  holdsInOrder(): Hold[] {
    return [...this.holds.values()].sort((a, b) => a.id - b.id);
  }

  /** Ended holds remembered now. */
  get closedHoldCount(): number {
    return this.closedHolds.size;
  }

  /** The map key (seq) of a hold id of this partition; -1 for another's. */
  private keyOf(holdId: number): number {
    const seq = (holdId - this.id) / partitionCountMax;
    return Number.isInteger(seq) && seq > 0 ? seq : -1;
  }
}

function viewOf(p: Position): PositionView {
  return {
    productId: p.productId,
    warehouseId: p.warehouseId,
    available: p.available,
    reserved: p.reserved,
    received: p.received,
    adjusted: p.adjusted,
    fulfilled: p.fulfilled,
  };
}

const outcomeNames = {
  [HoldOutcome.Released]: "RELEASED",
  [HoldOutcome.Expired]: "EXPIRED",
  [HoldOutcome.Aborted]: "ABORTED",
  [HoldOutcome.Fulfilled]: "FULFILLED",
} as const;

function checkPosition(p: Position): void {
  if (
    !(p.available >= 0 && p.reserved >= 0) ||
    p.received + p.adjusted - p.fulfilled !== p.available + p.reserved
  ) {
    throw new Error(
      `invariant: ${p.productId}@${p.warehouseId} available=${p.available} reserved=${p.reserved} ` +
        `received=${p.received} adjusted=${p.adjusted} fulfilled=${p.fulfilled}`,
    );
  }
}

function outcomeOf(reason: ReleaseReason): HoldOutcome {
  if (reason === ReleaseReason.Released) return HoldOutcome.Released;
  if (reason === ReleaseReason.Expired) return HoldOutcome.Expired;
  if (reason === ReleaseReason.Aborted) return HoldOutcome.Aborted;
  throw new Error(`unknown release reason ${reason}`);
}

function answerOf(remembered: Remembered, lines: Line[]): ReserveResult {
  const known = remembered.toRecord();
  if (!sameLines(known.lines, lines)) {
    return fail(
      ErrorCode.RequestIdReused,
      known.holdId === 0
        ? `request id ${known.requestId} was first used for other lines (refused)`
        : `request id ${known.requestId} was first used for other lines (hold ${known.holdId})`,
    );
  }
  if (known.holdId === 0) {
    return outOfStock(known.lineIndex, known.available, lines[known.lineIndex] ?? lines[0]!);
  }
  return {
    ok: true,
    reservation: {
      holdId: known.holdId,
      expireTimeMs: known.expireTimeMs,
      lines: copyLines(known.lines),
      replayed: true,
    },
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
