import { NumberRing } from "./fifo.ts";
import { HoldFlag, HoldTable } from "./hold_table.ts";
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
import { type RequestRecord, RequestTable } from "./request_table.ts";
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
import { TimerWheel } from "./wheel.ts";

/** An open hold as snapshots, digests and operators see it. */
export interface OpenHold {
  id: number;
  expireTimeMs: number;
  /** "" when placed without one. */
  requestId: string;
  /** HoldFlag bits. */
  flags: number;
  lines: Line[];
}

export interface PartitionConfig {
  partitionCount: number;
  holdDurationMs?: number;
  idempotencyWindowMs?: number;
  wheelTickMs?: number;
  /** Check the whole partition's invariants after every event (tests). */
  paranoid?: boolean;
  /** Seeds the hash of remembered request ids: pass a random number so that
   * ids chosen by clients cannot be made to collide. It changes no state. */
  requestHashSeed?: number;
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
export { HoldFlag, Position, type RequestRecord };

export class Partition {
  readonly positions = new PositionIndex();
  /** Open holds by seq (the hold id is seq * 1024 + partition). */
  private readonly holds: HoldTable;
  /** Recently ended holds: seq -> closeTimeMs * 8 + outcome; their seqs and
   * close times in close order, for forgetting past the window. */
  private readonly closedHolds = new SeqTable();
  private readonly closedOrder = new NumberRing();
  private readonly closedTimes = new NumberRing();
  private readonly requests: RequestTable;
  readonly wheel: TimerWheel;
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
    this.holds = new HoldTable(this.positions);
    this.requests = new RequestTable(this.positions, config.requestHashSeed ?? 0);
    this.wheel = new TimerWheel(this.holds, config.wheelTickMs ?? wheelTickMsDefault, 0);
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
      const known = this.requests.find(requestId);
      // A record past the window is forgotten even if not yet purged (purging
      // happens only in apply(), so that replay purges exactly the same).
      if (
        known !== -1 &&
        this.requests.timeAt(known) > this.eventTime(nowMs) - this.idempotencyWindowMs
      ) {
        return answerOf(this.requests.recordAt(known), cmd.lines);
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
      (flags) => (flags & HoldFlag.Prepared) !== 0,
    );
  }

  /** Pins a hold: it cannot expire until unpinned (an order settling). */
  pin(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.mark(cmd, nowMs, EventType.HoldPinned, (f) => (f & HoldFlag.Pinned) === 0);
  }

  /** Unpins a hold: it expires at its deadline again (at once if passed). */
  unpin(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.mark(cmd, nowMs, EventType.HoldUnpinned, (f) => (f & HoldFlag.Pinned) !== 0);
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
    needed: (flags: number) => boolean,
  ): ReleaseResult {
    const invalid = validateRelease(cmd);
    if (invalid !== null) return invalid;
    const slot = this.holds.find(this.keyOf(cmd.holdId));
    if (slot === -1) return this.holdGone(cmd.holdId, nowMs);
    const holdId = cmd.holdId; // found by keyOf(cmd.holdId): the same id
    if (needed(this.holds.flags[slot]!)) {
      this.emit({ type, seq: this.seq + 1, timeMs: this.eventTime(nowMs), holdId });
    }
    return { ok: true, holdId };
  }

  /** Holds awaiting the coordinator: prepared or pinned (start-up). */
  pendingHolds(): { holdId: number; prepared: boolean; pinned: boolean }[] {
    const out = [];
    for (const slot of this.holds.slots()) {
      const flags = this.holds.flags[slot]!;
      if (flags === 0) continue;
      out.push({
        holdId: this.holdIdAt(slot),
        prepared: (flags & HoldFlag.Prepared) !== 0,
        pinned: (flags & HoldFlag.Pinned) !== 0,
      });
    }
    return out.sort((a, b) => a.holdId - b.holdId);
  }

  release(cmd: ReleaseHold, nowMs: number): ReleaseResult {
    return this.end(cmd, nowMs, ReleaseReason.Released);
  }

  private end(cmd: ReleaseHold, nowMs: number, reason: ReleaseReason): ReleaseResult {
    const invalid = validateRelease(cmd);
    if (invalid !== null) return invalid;
    const slot = this.holds.find(this.keyOf(cmd.holdId));
    if (slot === -1) return this.holdGone(cmd.holdId, nowMs);
    const holdId = cmd.holdId; // found by keyOf(cmd.holdId): the same id
    this.emit({
      type: EventType.HoldReleased,
      seq: this.seq + 1,
      timeMs: this.eventTime(nowMs),
      holdId,
      reason,
    });
    return { ok: true, holdId };
  }

  fulfil(cmd: FulfilHold, nowMs: number): FulfilResult {
    const invalid = validateFulfil(cmd);
    if (invalid !== null) return invalid;
    const slot = this.holds.find(this.keyOf(cmd.holdId));
    if (slot === -1) return this.holdGone(cmd.holdId, nowMs);
    const holdId = cmd.holdId; // found by keyOf(cmd.holdId): the same id
    const lineCount = this.holds.lineCount(slot);
    const quantities: number[] = [];
    for (let i = 0; i < lineCount; i++) quantities.push(this.holds.quantityAt(slot, i));
    if (cmd.quantities !== undefined) {
      if (cmd.quantities.length !== lineCount) {
        return fail(
          ErrorCode.InvalidArgument,
          `quantities has ${cmd.quantities.length} entries; hold ${holdId} has ${lineCount} lines`,
        );
      }
      for (let i = 0; i < lineCount; i++) {
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
      holdId,
      quantities,
    });
    return { ok: true, holdId, quantities: [...quantities] };
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
    for (const slot of due) this.wheel.schedule(slot);
    // By id, not slot: closing a hold may compact the table (new slots).
    const holdIds = due.map((slot) => this.holdIdAt(slot));
    for (const holdId of holdIds) {
      this.emit({
        type: EventType.HoldReleased,
        seq: this.seq + 1,
        timeMs: this.eventTime(nowMs),
        holdId,
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
        this.keep({
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
        const slot = this.openHold(event.holdId, event.seq);
        const holds = this.holds;
        for (let i = 0, n = holds.lineCount(slot); i < n; i++) {
          const p = holds.positionAt(slot, i);
          const q = holds.quantityAt(slot, i);
          p.reserved -= q;
          p.available += q;
          checkPosition(p);
        }
        this.close(slot, outcomeOf(event.reason), event.timeMs);
        break;
      }
      case EventType.HoldConfirmed:
        this.holds.flags[this.openHold(event.holdId, event.seq)]! &= ~HoldFlag.Prepared;
        break;
      case EventType.HoldPinned: {
        const slot = this.openHold(event.holdId, event.seq);
        this.holds.flags[slot]! |= HoldFlag.Pinned;
        this.wheel.cancel(slot);
        break;
      }
      case EventType.HoldUnpinned: {
        const slot = this.openHold(event.holdId, event.seq);
        this.holds.flags[slot]! &= ~HoldFlag.Pinned;
        this.wheel.schedule(slot);
        break;
      }
      case EventType.HoldFulfilled: {
        const slot = this.openHold(event.holdId, event.seq);
        const holds = this.holds;
        const n = holds.lineCount(slot);
        if (event.quantities.length !== n) {
          throw new Error(`partition ${this.id}: event ${event.seq} fulfils the wrong line count`);
        }
        for (let i = 0; i < n; i++) {
          const p = holds.positionAt(slot, i);
          const q = holds.quantityAt(slot, i);
          const f = event.quantities[i]!;
          if (!(f >= 0 && f <= q)) throw new Error(`partition ${this.id}: bad fulfil ${event.seq}`);
          p.reserved -= q;
          p.available += q - f;
          p.fulfilled += f;
          checkPosition(p);
        }
        this.close(slot, HoldOutcome.Fulfilled, event.timeMs);
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
    const slot = this.holds.find(this.keyOf(holdId));
    if (slot !== -1) {
      const h = this.openHoldAt(slot);
      return {
        holdId,
        status: "OPEN",
        expireTimeMs: h.expireTimeMs,
        requestId: h.requestId,
        lines: h.lines,
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
    const holds = this.holds;
    for (const slot of holds.slots()) {
      const isPinned = (holds.flags[slot]! & HoldFlag.Pinned) !== 0;
      if (isPinned) pinned++;
      if ((holds.wheelSlot[slot] === -1) !== isPinned) {
        const id = this.holdIdAt(slot);
        throw new Error(`hold ${id} is ${isPinned ? "pinned but in" : "not in"} the wheel`);
      }
      for (let i = 0, n = holds.lineCount(slot); i < n; i++) {
        const p = holds.positionAt(slot, i);
        held.set(p, (held.get(p) ?? 0) + holds.quantityAt(slot, i));
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
    let slot: number;
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
      slot = this.holds.addOne(key, event.expireTimeMs, event.requestId, p, line.quantity);
      if (rememberRequest && event.requestId !== "") {
        this.keepHeld(
          event.requestId,
          event.timeMs,
          event.holdId,
          event.expireTimeMs,
          p,
          line.quantity,
        );
      }
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
      slot = this.holds.addMany(key, event.expireTimeMs, event.requestId, positions, quantities);
      if (rememberRequest && event.requestId !== "") {
        this.keep({
          requestId: event.requestId,
          timeMs: event.timeMs,
          holdId: event.holdId,
          expireTimeMs: event.expireTimeMs,
          lines: copyLines(event.lines),
          lineIndex: 0,
          available: 0,
        });
      }
    }
    if (event.prepared) this.holds.flags[slot] = HoldFlag.Prepared;
    this.wheel.schedule(slot);
  }

  /** The slot of an open hold an event names; a bug if it is not open. */
  private openHold(holdId: number, seq: number): number {
    const slot = this.holds.find(this.keyOf(holdId));
    if (slot === -1)
      throw new Error(`partition ${this.id}: event ${seq} ends hold ${holdId}, not open`);
    return slot;
  }

  private close(slot: number, outcome: HoldOutcome, timeMs: number): void {
    const seq = this.holds.seq[slot]!;
    this.wheel.cancel(slot);
    this.holds.remove(slot);
    if (this.holds.shouldShrink()) this.shrinkHolds();
    this.closedHolds.set(seq, timeMs * 8 + outcome);
    this.closedOrder.push(seq);
    this.closedTimes.push(timeMs);
  }

  /** Gives back the memory of a peak of open holds: the table is compacted
   * into smaller arrays (every hold moves to a new slot), so the wheel, which
   * links slots, is rebuilt from the moved holds. O(open holds), at most once
   * per halving. */
  private shrinkHolds(): void {
    this.wheel.clear();
    this.holds.shrink();
    const holds = this.holds;
    for (let slot = 0; slot < holds.size; slot++) {
      if ((holds.flags[slot]! & HoldFlag.Pinned) === 0) this.wheel.schedule(slot);
    }
  }

  /** Restores a remembered request (snapshot load; its hold, if still open,
   * restored before). A request that placed a hold of one line is kept in
   * the compact form, as when it was first answered. */
  remember(record: RequestRecord): void {
    if (record.holdId !== 0) {
      const slot = this.holds.find(this.keyOf(record.holdId));
      if (
        slot !== -1 &&
        (this.holds.expireTimeMs[slot] !== record.expireTimeMs ||
          !sameLines(this.holds.lines(slot), record.lines))
      ) {
        throw new Error(
          `partition ${this.id}: request ${record.requestId} disagrees with hold ${record.holdId}`,
        );
      }
      const line = record.lines.length === 1 ? record.lines[0]! : undefined;
      const p = line && this.positions.get(line.productId, line.warehouseId);
      if (line !== undefined && p !== undefined) {
        this.keepHeld(
          record.requestId,
          record.timeMs,
          record.holdId,
          record.expireTimeMs,
          p,
          line.quantity,
        );
        return;
      }
    }
    this.keep(record);
  }

  /** Remembers a request that placed a hold of one line, in compact form. */
  private keepHeld(
    requestId: string,
    timeMs: number,
    holdId: number,
    expireTimeMs: number,
    position: Position,
    quantity: number,
  ): void {
    this.checkUnanswered(requestId, timeMs);
    this.requests.addHeld(requestId, timeMs, holdId, expireTimeMs, position, quantity);
    this.boundRequests();
  }

  /** Remembers a request by its whole record (refusals, several lines). */
  private keep(record: RequestRecord): void {
    this.checkUnanswered(record.requestId, record.timeMs);
    this.requests.addRecord(record);
    this.boundRequests();
  }

  /** A request id is answered once per window; a second answer is a bug. */
  private checkUnanswered(requestId: string, timeMs: number): void {
    const known = this.requests.find(requestId);
    if (known !== -1 && this.requests.timeAt(known) > timeMs - this.idempotencyWindowMs) {
      throw new Error(`partition ${this.id}: request ${requestId} answered twice`);
    }
  }

  private boundRequests(): void {
    while (this.requests.size > requestCountMax) this.requests.dropOldest();
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
      const slot = this.holds.find(this.keyOf(event.holdId));
      this.holds.flags[slot]! |= HoldFlag.Pinned;
      this.wheel.cancel(slot);
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
    while (this.requests.oldestTimeMs() <= horizon) this.requests.dropOldest();
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
    return this.requests.toArray();
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
  holdsInOrder(): OpenHold[] {
    return this.holds
      .slots()
      .map((slot) => this.openHoldAt(slot))
      .sort((a, b) => a.id - b.id);
  }

  /** Open holds now. */
  get holdCount(): number {
    return this.holds.size;
  }

  /** Slots of the open-hold table now (it grows with a peak of open holds
   * and shrinks once few remain). */
  get holdCapacity(): number {
    return this.holds.capacity;
  }

  private openHoldAt(slot: number): OpenHold {
    const holds = this.holds;
    return {
      id: this.holdIdAt(slot),
      expireTimeMs: holds.expireTimeMs[slot]!,
      requestId: holds.requestId[slot]!,
      flags: holds.flags[slot]!,
      lines: holds.lines(slot),
    };
  }

  private holdIdAt(slot: number): number {
    return holdIdOf(this.holds.seq[slot]!, this.id);
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

function answerOf(known: RequestRecord, lines: Line[]): ReserveResult {
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
