import {
  type AdjustmentReason,
  type Failure,
  type HoldView,
  type Line,
  limits,
  type PositionView,
  type ReserveStock,
} from "../engine/index.ts";
import type { Engine as HostEngine } from "../host/index.ts";
import { RecordKind, type RecordStore } from "../persistence/index.ts";
import { allocate, type Candidate, type Place, type Wanted } from "./allocate.ts";
import type { Catalog } from "./catalog.ts";
import { ApiError, type Details, invalid } from "./errors.ts";
import { gatewayLimits } from "./limits.ts";

// Stock: receipts, adjustments, levels, and holds (reserve with warehouse
// allocation, release, fulfil). Every id is checked against the catalog
// before the engine sees it; every engine refusal becomes an ApiError with
// the same code.

export interface ReserveLineInput {
  productId: string;
  /** Empty: stockd chooses (src/gateway/allocate.ts). */
  warehouseId: string;
  quantity: number;
}

export interface ReserveInput {
  lines: ReserveLineInput[];
  /** 0: the server's default hold duration. */
  holdSeconds: number;
  /** Idempotency key; empty for none. */
  requestId: string;
  shipTo?: Place | undefined;
}

export interface ReservationOut {
  holdId: number;
  status: HoldView["status"];
  lines: Line[];
  expireTimeMs: number;
  closeTimeMs?: number;
  replayed: boolean;
}

export interface Level {
  productId: string;
  warehouseId: string;
  available: number;
  reserved: number;
}

/** A remembered allocation of a keyed reservation (key `a:<requestId>`), so
 * that a retry asks the engine for the same lines and gets its first answer. */
interface AllocationRecord {
  /** The lines as asked, to recognise the same request. */
  asked: Wanted[];
  lines: Line[];
  origin: number[];
  timeMs: number;
}

export class Stock {
  constructor(
    private readonly engine: HostEngine,
    private readonly catalog: Catalog,
    private readonly records: RecordStore,
    private readonly holdDurationMsDefault: number,
  ) {}

  async receive(productId: string, warehouseId: string, quantity: number): Promise<Level> {
    this.catalog.mustProduct(productId);
    this.catalog.mustWarehouse(warehouseId);
    quantityIn("quantity", quantity, 1);
    const r = await this.engine.receiveStock({ productId, warehouseId, quantity });
    if (!r.ok) throw engineError(r);
    return level(r.position);
  }

  async adjust(
    productId: string,
    warehouseId: string,
    delta: number,
    reason: AdjustmentReason,
  ): Promise<Level> {
    this.catalog.mustProduct(productId);
    this.catalog.mustWarehouse(warehouseId);
    if (!Number.isSafeInteger(delta) || delta === 0 || Math.abs(delta) > limits.quantityMax) {
      throw invalid(`delta must be a non-zero whole number within ±${limits.quantityMax}`, {
        field: "delta",
      });
    }
    const r = await this.engine.adjustStock({ productId, warehouseId, delta, reason });
    if (!r.ok) throw engineError(r);
    return level(r.position);
  }

  /** The product's stock in every warehouse that has a position for it. */
  async levels(productId: string): Promise<Level[]> {
    this.catalog.mustProduct(productId);
    const positions = await this.engine.positions(productId, this.catalog.warehouseIds());
    return positions.map(level);
  }

  /** Holds every line or none. The common case (every line names its
   * warehouse) is one engine call and no more: no async frame, no copies. */
  reserve(input: ReserveInput, nowMs: number): Promise<ReservationOut> {
    let c: CheckedReserve;
    try {
      c = this.checkReserve(input);
    } catch (err) {
      return Promise.reject(err);
    }
    if (choosesWarehouse(c.wanted)) {
      return this.reserveChoosing(input, c.wanted, c.holdDurationMs, c.requestId, nowMs);
    }
    return this.engine.reserve(reserveCmd(c.wanted, c.requestId, c.holdDurationMs)).then((r) => {
      if (!r.ok) throw engineError(r, c.wanted);
      return opened(r.reservation);
    });
  }

  /**
   * A batch of reservations, each all or nothing on its own, answered in
   * order: a reservation or its error. Those whose lines all name their
   * warehouse (the common case) go to the engine together, with one promise
   * for them all; the rest take reserve()'s way one by one.
   */
  async reserveMany(inputs: ReserveInput[], nowMs: number): Promise<(ReservationOut | ApiError)[]> {
    const out = new Array<ReservationOut | ApiError>(inputs.length);
    const cmds: ReserveStock[] = [];
    const asked: { index: number; wanted: Wanted[] }[] = [];
    const apart: Promise<void>[] = [];
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!;
      let c: CheckedReserve;
      try {
        c = this.checkReserve(input);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        out[i] = err;
        continue;
      }
      if (choosesWarehouse(c.wanted)) {
        apart.push(
          this.reserveChoosing(input, c.wanted, c.holdDurationMs, c.requestId, nowMs).then(
            (r) => {
              out[i] = r;
            },
            (err: unknown) => {
              if (!(err instanceof ApiError)) throw err;
              out[i] = err;
            },
          ),
        );
        continue;
      }
      cmds.push(reserveCmd(c.wanted, c.requestId, c.holdDurationMs));
      asked.push({ index: i, wanted: c.wanted });
    }
    const [results] = await Promise.all([this.engine.reserveMany(cmds), ...apart]);
    for (let k = 0; k < results.length; k++) {
      const r = results[k]!;
      const { index, wanted } = asked[k]!;
      out[index] = r.ok ? opened(r.reservation) : engineError(r, wanted);
    }
    return out;
  }

  /** A reservation's input checked (throws an ApiError when it is bad). */
  private checkReserve(input: ReserveInput): CheckedReserve {
    const wanted = this.checkLines(input.lines);
    const holdDurationMs = this.holdDuration(input.holdSeconds);
    const requestId = requestIdIn(input.requestId);
    if (input.shipTo !== undefined) placeIn(input.shipTo);
    return { wanted, holdDurationMs, requestId };
  }

  /** Reserves lines of which some need a warehouse chosen. */
  private async reserveChoosing(
    input: ReserveInput,
    wanted: Wanted[],
    holdDurationMs: number,
    requestId: string | undefined,
    nowMs: number,
  ): Promise<ReservationOut> {
    if (requestId !== undefined) {
      const known = this.records.get<AllocationRecord>(RecordKind.Key, `a:${requestId}`);
      if (known !== undefined) {
        if (!sameWanted(known.asked, wanted)) {
          throw new ApiError(
            "REQUEST_ID_REUSED",
            `request id ${requestId} was used for other lines; use a new one`,
          );
        }
        const r = await this.engine.reserve(reserveCmd(known.lines, requestId, holdDurationMs));
        if (!r.ok) throw engineError(r, known.lines, known.origin);
        return opened(r.reservation);
      }
    }
    // Without a key a lost race (stock taken between reading and reserving)
    // is retried with fresh levels; a keyed refusal is remembered by the
    // engine, so a keyed reservation is tried once.
    const attempts = requestId === undefined ? gatewayLimits.allocateAttemptMax : 1;
    for (let attempt = 1; ; attempt++) {
      const a = await this.allocate(wanted, input.shipTo);
      if (!a.ok) {
        const line = wanted[a.lineIndex]!;
        throw new ApiError(
          "OUT_OF_STOCK",
          `line ${a.lineIndex}: ${line.quantity} of product ${line.productId} wanted, ${a.available} available in all warehouses`,
          { lineIndex: a.lineIndex, productId: line.productId, available: a.available },
        );
      }
      if (requestId !== undefined) {
        const record: AllocationRecord = {
          asked: wanted,
          lines: a.lines,
          origin: a.origin,
          timeMs: nowMs,
        };
        await this.records.write([{ kind: RecordKind.Key, key: `a:${requestId}`, value: record }]);
      }
      const r = await this.engine.reserve(reserveCmd(a.lines, requestId, holdDurationMs));
      if (r.ok) return opened(r.reservation);
      if (r.code !== "OUT_OF_STOCK" || attempt >= attempts) throw engineError(r, a.lines, a.origin);
    }
  }

  /** Chooses warehouses for the lines that name none. */
  async allocate(wanted: Wanted[], shipTo: Place | undefined) {
    const products = [
      ...new Set(wanted.filter((l) => l.warehouseId === "").map((l) => l.productId)),
    ];
    const ids = this.catalog.warehouseIds();
    const levels = await Promise.all(products.map((p) => this.engine.positions(p, ids)));
    const byProduct = new Map<string, Candidate[]>();
    products.forEach((p, i) => {
      byProduct.set(
        p,
        levels[i]!.map((pos) => {
          const w = this.catalog.mustWarehouse(pos.warehouseId);
          return {
            warehouseId: w.id,
            available: pos.available,
            latitude: w.latitude,
            longitude: w.longitude,
          };
        }),
      );
    });
    return allocate(wanted, (p) => byProduct.get(p) ?? [], shipTo);
  }

  /** Releases a hold; releasing one already released or expired answers
   * how it ended (idempotent). */
  async release(holdId: number): Promise<ReservationOut> {
    const r = await this.engine.release({ holdId });
    if (!r.ok && r.code !== "HOLD_RELEASED" && r.code !== "HOLD_EXPIRED") {
      throw engineError(r);
    }
    return this.get(holdId);
  }

  /** Fulfils a hold (all of it, or the given units per line); fulfilling
   * one already fulfilled answers it again (idempotent). */
  async fulfil(holdId: number, quantities: number[] | undefined): Promise<ReservationOut> {
    if (quantities !== undefined) {
      for (const q of quantities) quantityIn("quantity", q, 0);
    }
    const r = await this.engine.fulfil(
      quantities === undefined || quantities.length === 0 ? { holdId } : { holdId, quantities },
    );
    if (!r.ok && r.code !== "HOLD_FULFILLED") throw engineError(r);
    return this.get(holdId);
  }

  async get(holdId: number): Promise<ReservationOut> {
    const h = await this.engine.hold(holdId);
    if (h === null) {
      throw new ApiError("HOLD_NOT_FOUND", `reservation ${holdId} not found`, {
        id: String(holdId),
      });
    }
    return h.status === "OPEN"
      ? { holdId, status: "OPEN", lines: h.lines, expireTimeMs: h.expireTimeMs, replayed: false }
      : {
          holdId,
          status: h.status,
          lines: [],
          expireTimeMs: 0,
          closeTimeMs: h.closeTimeMs,
          replayed: false,
        };
  }

  /** Checks the lines against the catalog and the bounds. */
  checkLines(lines: ReserveLineInput[]): Wanted[] {
    if (!Array.isArray(lines) || lines.length < 1 || lines.length > limits.lineCountMax) {
      throw invalid(`lines must hold 1 to ${limits.lineCountMax} lines`, { field: "lines" });
    }
    // The caller's line objects are used as they are (both transports make
    // fresh ones): nothing else holds them.
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!;
      this.catalog.mustProduct(l.productId);
      if (l.warehouseId !== "") this.catalog.mustWarehouse(l.warehouseId);
      quantityIn(`lines[${i}].quantity`, l.quantity, 1);
    }
    return lines;
  }

  holdDuration(holdSeconds: number): number {
    if (holdSeconds === 0) return this.holdDurationMsDefault;
    if (
      !Number.isSafeInteger(holdSeconds) ||
      holdSeconds < 1 ||
      holdSeconds * 1000 > limits.holdDurationMsMax
    ) {
      throw invalid(
        `holdSeconds must be a whole number from 1 to ${limits.holdDurationMsMax / 1000}`,
        { field: "holdSeconds" },
      );
    }
    return holdSeconds * 1000;
  }

  /** Forgets idempotency records (allocations, checkout keys) older than
   * the idempotency window. */
  async prune(nowMs: number, windowMs: number): Promise<number> {
    const old: string[] = [];
    for (const { key, value } of this.records.all<{ timeMs: number }>(RecordKind.Key)) {
      if (value.timeMs < nowMs - windowMs) old.push(key);
    }
    if (old.length > 0) {
      await this.records.write(old.map((key) => ({ kind: RecordKind.Key, key, value: null })));
    }
    return old.length;
  }
}

function sameWanted(a: Wanted[], b: Wanted[]): boolean {
  return (
    a.length === b.length &&
    a.every((l, i) => {
      const o = b[i]!;
      return (
        l.productId === o.productId && l.warehouseId === o.warehouseId && l.quantity === o.quantity
      );
    })
  );
}

interface CheckedReserve {
  wanted: Wanted[];
  holdDurationMs: number;
  requestId: string | undefined;
}

/** True when some line names no warehouse: stockd chooses one. */
function choosesWarehouse(wanted: Wanted[]): boolean {
  for (const l of wanted) if (l.warehouseId === "") return true;
  return false;
}

function reserveCmd(lines: Line[], requestId: string | undefined, holdDurationMs: number) {
  return requestId === undefined ? { lines, holdDurationMs } : { lines, requestId, holdDurationMs };
}

function opened(r: {
  holdId: number;
  lines: Line[];
  expireTimeMs: number;
  replayed: boolean;
}): ReservationOut {
  return {
    holdId: r.holdId,
    status: "OPEN",
    lines: r.lines,
    expireTimeMs: r.expireTimeMs,
    replayed: r.replayed,
  };
}

function level(p: PositionView): Level {
  return {
    productId: p.productId,
    warehouseId: p.warehouseId,
    available: p.available,
    reserved: p.reserved,
  };
}

/** Checks a shipping place (both transports, reservations and checkout). */
export function placeIn(p: Place): void {
  if (
    !(Math.abs(p.latitude) <= 90 && Math.abs(p.longitude) <= 180) ||
    Number.isNaN(p.latitude + p.longitude)
  ) {
    throw invalid("the shipping place must be a latitude within ±90 and a longitude within ±180", {
      field: "ship_to",
    });
  }
}

export function quantityIn(field: string, q: number, min: 0 | 1): void {
  if (!Number.isSafeInteger(q) || q < min || q > limits.quantityMax) {
    throw invalid(`${field} must be a whole number from ${min} to ${limits.quantityMax}`, {
      field,
    });
  }
}

/** An Idempotency-Key (reservations and checkout); undefined for none. */
export function requestIdIn(id: string): string | undefined {
  if (id === "") return undefined;
  if (id.length > gatewayLimits.keyLengthMax || !/^[\x21-\x7e]+$/.test(id)) {
    throw invalid(
      `Idempotency-Key must be 1 to ${gatewayLimits.keyLengthMax} printable ASCII characters`,
      { field: "Idempotency-Key" },
    );
  }
  return id;
}

/** An engine refusal as an ApiError; `origin` maps allocated lines back to
 * the lines the caller sent. */
export function engineError(f: Failure, lines?: Line[], origin?: number[]): ApiError {
  const details: Details = {};
  if (f.lineIndex !== undefined) {
    details.lineIndex = origin?.[f.lineIndex] ?? f.lineIndex;
    const line = lines?.[f.lineIndex];
    if (line !== undefined) {
      details.productId = line.productId;
      details.warehouseId = line.warehouseId;
    }
  }
  if (f.available !== undefined) details.available = f.available;
  return new ApiError(f.code, f.message, details);
}
