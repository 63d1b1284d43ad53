import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AdjustmentReason,
  digestPartition,
  ErrorCode,
  EventType,
  holdIdOf,
  type Line,
  limits,
  Partition,
  type PositionView,
  partitionOf,
  ReleaseReason,
} from "../../src/engine/index.ts";

// A model-based test of one partition: a reference model made of plain maps
// predicts every answer, and every answer of the real partition must match
// it. The model knows nothing of timer wheels, FIFOs or packed outcomes.

const partitionCount = 4;
const pid = 3;
const T0 = 1_700_000_000_000;
const holdDurationMs = 30_000;
const idempotencyWindowMs = 120_000;
const quantityMax = limits.quantityMax;

function productsIn(partition: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const id = `m-${i}`;
    if (partitionOf(id, partitionCount) === partition) out.push(id);
  }
  return out;
}

const products = productsIn(pid, 3);
const warehouses = ["east", "west"];
const requestIds = ["r1", "r2", "r3"];

// ---- the model --------------------------------------------------------------

interface MPos {
  available: number;
  reserved: number;
  received: number;
  adjusted: number;
  fulfilled: number;
}
interface MHold {
  holdId: number;
  lines: Line[];
  expireTimeMs: number;
}
interface MRequest {
  timeMs: number;
  /** 0 when refused. */
  holdId: number;
  expireTimeMs: number;
  lines: Line[];
  lineIndex: number;
  available: number;
}
type Closed = "HOLD_RELEASED" | "HOLD_EXPIRED" | "HOLD_FULFILLED";

/** An answer reduced to what the model predicts. */
type Answer =
  | { ok: false; code: string; lineIndex?: number; available?: number }
  | ({ ok: true } & Record<string, unknown>);

class Model {
  now = T0;
  seq = 0;
  readonly positions = new Map<string, MPos>();
  readonly open = new Map<number, MHold>();
  /** Ended holds still remembered: outcome and close time. */
  readonly closed = new Map<number, { code: Closed; closeTimeMs: number }>();
  readonly requests = new Map<string, MRequest>();
  /** Every hold id ever issued, for commands to pick from. */
  readonly issued: number[] = [];
  /** Every keyed reserve sent, for retries. */
  readonly keyed: Reserve[] = [];

  pos(productId: string, warehouseId: string): MPos | undefined {
    return this.positions.get(`${productId}@${warehouseId}`);
  }

  posOrNew(productId: string, warehouseId: string): MPos {
    const key = `${productId}@${warehouseId}`;
    let p = this.positions.get(key);
    if (p === undefined) {
      p = { available: 0, reserved: 0, received: 0, adjusted: 0, fulfilled: 0 };
      this.positions.set(key, p);
    }
    return p;
  }

  /** One event at `now`: the sequence moves and old memories are dropped. */
  event(): number {
    this.seq++;
    const horizon = this.now - idempotencyWindowMs;
    for (const [id, c] of this.closed) if (c.closeTimeMs <= horizon) this.closed.delete(id);
    for (const [id, r] of this.requests) if (r.timeMs <= horizon) this.requests.delete(id);
    return this.seq;
  }

  view(productId: string, warehouseId: string): PositionView | null {
    const p = this.pos(productId, warehouseId);
    return p === undefined ? null : { productId, warehouseId, ...p };
  }

  close(hold: MHold, code: Closed): void {
    this.open.delete(hold.holdId);
    this.closed.set(hold.holdId, { code, closeTimeMs: this.now });
  }

  /** Why a hold that is not open cannot be released or fulfilled. */
  gone(holdId: number): Answer {
    const c = this.closed.get(holdId);
    if (c !== undefined && c.closeTimeMs > this.now - idempotencyWindowMs) {
      return { ok: false, code: c.code };
    }
    return { ok: false, code: ErrorCode.HoldNotFound };
  }
}

interface Real {
  p: Partition;
}

function isQuantity(q: unknown, min: number): q is number {
  return typeof q === "number" && Number.isInteger(q) && q >= min && q <= quantityMax;
}

function invalid(): Answer {
  return { ok: false, code: ErrorCode.InvalidArgument };
}

/** The real answer, reduced to the fields the model predicts. */
function reduce(
  answer: unknown,
  keep: (r: Record<string, unknown>) => Record<string, unknown>,
): Answer {
  const r = answer as Record<string, unknown>;
  if (r.ok !== true) {
    const out: Answer = { ok: false, code: r.code as string };
    if (r.lineIndex !== undefined) out.lineIndex = r.lineIndex as number;
    if (r.available !== undefined) out.available = r.available as number;
    return out;
  }
  return { ok: true, ...keep(r) };
}

function sameLines(a: Line[], b: Line[]): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => {
      const y = b[i]!;
      return (
        x.productId === y.productId && x.warehouseId === y.warehouseId && x.quantity === y.quantity
      );
    })
  );
}

/** After every command: the partition's own invariants, and the model's view
 * of every position and hold. */
function compareState(m: Model, r: Real): void {
  r.p.checkInvariants();
  expect(r.p.seq).toBe(m.seq);
  expect(r.p.holdCount).toBe(m.open.size);
  for (const productId of products) {
    for (const warehouseId of warehouses) {
      expect(r.p.position(productId, warehouseId)).toEqual(m.view(productId, warehouseId));
    }
  }
  for (const holdId of m.issued) {
    const view = r.p.hold(holdId);
    const open = m.open.get(holdId);
    if (open !== undefined) {
      expect(view).toMatchObject({
        status: "OPEN",
        expireTimeMs: open.expireTimeMs,
        lines: open.lines,
      });
      continue;
    }
    const c = m.closed.get(holdId);
    if (c === undefined) expect(view).toBeNull();
    else
      expect(view).toEqual({
        holdId,
        status: c.code.slice("HOLD_".length),
        closeTimeMs: c.closeTimeMs,
      });
  }
}

type Cmd = fc.Command<Model, Real>;

// ---- commands -----------------------------------------------------------------

class Receive implements Cmd {
  constructor(
    readonly product: number,
    readonly warehouse: number,
    readonly quantity: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const productId = products[this.product]!;
    const warehouseId = warehouses[this.warehouse]!;
    let expected: Answer;
    if (!isQuantity(this.quantity, 1)) expected = invalid();
    else {
      const p = m.posOrNew(productId, warehouseId);
      p.available += this.quantity;
      p.received += this.quantity;
      m.event();
      expected = { ok: true, position: m.view(productId, warehouseId) };
    }
    const got = r.p.receiveStock({ productId, warehouseId, quantity: this.quantity }, m.now);
    expect(reduce(got, (x) => ({ position: x.position }))).toEqual(expected);
    compareState(m, r);
  }
  toString(): string {
    return `Receive(${this.product}, ${this.warehouse}, ${this.quantity})`;
  }
}

class Adjust implements Cmd {
  constructor(
    readonly product: number,
    readonly warehouse: number,
    readonly delta: number,
    readonly reason: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const productId = products[this.product]!;
    const warehouseId = warehouses[this.warehouse]!;
    const d = this.delta;
    const reasonKnown = (Object.values(AdjustmentReason) as number[]).includes(this.reason);
    let expected: Answer;
    if (!Number.isInteger(d) || d === 0 || Math.abs(d) > quantityMax || !reasonKnown) {
      expected = invalid();
    } else {
      const available = m.pos(productId, warehouseId)?.available ?? 0;
      if (available + d < 0) expected = { ok: false, code: ErrorCode.InsufficientStock, available };
      else {
        const p = m.posOrNew(productId, warehouseId);
        p.available += d;
        p.adjusted += d;
        m.event();
        expected = { ok: true, position: m.view(productId, warehouseId) };
      }
    }
    const reason = this.reason as AdjustmentReason;
    const got = r.p.adjustStock({ productId, warehouseId, delta: d, reason }, m.now);
    expect(reduce(got, (x) => ({ position: x.position }))).toEqual(expected);
    compareState(m, r);
  }
  toString(): string {
    return `Adjust(${this.product}, ${this.warehouse}, ${this.delta}, reason ${this.reason})`;
  }
}

interface LineSpec {
  product: number;
  warehouse: number;
  quantity: number;
}

class Reserve implements Cmd {
  constructor(
    readonly specs: LineSpec[],
    readonly requestId: string | undefined,
    readonly holdDurationMs: number | undefined,
  ) {}
  check(): boolean {
    return true;
  }
  lines(): Line[] {
    return this.specs.map((s) => ({
      productId: products[s.product]!,
      warehouseId: warehouses[s.warehouse]!,
      quantity: s.quantity,
    }));
  }
  expect(m: Model, lines: Line[]): Answer {
    const seen = new Set<string>();
    for (const l of lines) {
      const key = `${l.productId}@${l.warehouseId}`;
      if (!isQuantity(l.quantity, 1) || seen.has(key)) return invalid();
      seen.add(key);
    }
    const d = this.holdDurationMs;
    if (d !== undefined && !(Number.isInteger(d) && d >= 1 && d <= limits.holdDurationMsMax)) {
      return invalid();
    }
    const requestId = this.requestId ?? "";
    const known = m.requests.get(requestId);
    if (known !== undefined && known.timeMs > m.now - idempotencyWindowMs) {
      if (!sameLines(known.lines, lines)) return { ok: false, code: ErrorCode.RequestIdReused };
      if (known.holdId === 0) {
        // A refused request is refused again, the same way.
        return {
          ok: false,
          code: ErrorCode.OutOfStock,
          lineIndex: known.lineIndex,
          available: known.available,
        };
      }
      return {
        ok: true,
        holdId: known.holdId,
        expireTimeMs: known.expireTimeMs,
        replayed: true,
        lines: known.lines,
      };
    }
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!;
      const available = m.pos(l.productId, l.warehouseId)?.available ?? 0;
      if (available < l.quantity) {
        if (requestId !== "") {
          m.event();
          m.requests.set(requestId, {
            timeMs: m.now,
            holdId: 0,
            expireTimeMs: 0,
            lines,
            lineIndex: i,
            available,
          });
        }
        return { ok: false, code: ErrorCode.OutOfStock, lineIndex: i, available };
      }
    }
    for (const l of lines) {
      const p = m.posOrNew(l.productId, l.warehouseId);
      p.available -= l.quantity;
      p.reserved += l.quantity;
    }
    const seq = m.event();
    const hold: MHold = {
      holdId: holdIdOf(seq, pid),
      lines,
      expireTimeMs: m.now + (d ?? holdDurationMs),
    };
    m.open.set(hold.holdId, hold);
    m.issued.push(hold.holdId);
    if (requestId !== "") {
      m.requests.set(requestId, {
        timeMs: m.now,
        holdId: hold.holdId,
        expireTimeMs: hold.expireTimeMs,
        lines,
        lineIndex: 0,
        available: 0,
      });
    }
    return {
      ok: true,
      holdId: hold.holdId,
      expireTimeMs: hold.expireTimeMs,
      replayed: false,
      lines,
    };
  }
  run(m: Model, r: Real): void {
    if (this.requestId !== undefined) m.keyed.push(this);
    const lines = this.lines();
    const expected = this.expect(m, lines);
    const cmd: { lines: Line[]; requestId?: string; holdDurationMs?: number } = {
      lines: this.lines(),
    };
    if (this.requestId !== undefined) cmd.requestId = this.requestId;
    if (this.holdDurationMs !== undefined) cmd.holdDurationMs = this.holdDurationMs;
    const got = r.p.reserve(cmd, m.now);
    expect(
      reduce(got, (x) => {
        const v = x.reservation as {
          holdId: number;
          expireTimeMs: number;
          replayed: boolean;
          lines: Line[];
        };
        return {
          holdId: v.holdId,
          expireTimeMs: v.expireTimeMs,
          replayed: v.replayed,
          lines: v.lines,
        };
      }),
    ).toEqual(expected);
    compareState(m, r);
  }
  toString(): string {
    const ls = this.specs.map((s) => `${s.product}/${s.warehouse}x${s.quantity}`).join(", ");
    return `Reserve([${ls}], ${this.requestId ?? "-"}, ${this.holdDurationMs ?? "-"})`;
  }
}

/** A caller retrying a keyed reserve it sent before, unchanged. */
class Retry implements Cmd {
  constructor(readonly pick: number) {}
  check(m: Readonly<Model>): boolean {
    return m.keyed.length > 0;
  }
  run(m: Model, r: Real): void {
    m.keyed[this.pick % m.keyed.length]!.run(m, r);
  }
  toString(): string {
    return `Retry(${this.pick})`;
  }
}

/** Which hold a release or fulfil names: one issued before, or none ever. */
type HoldRef = { kind: "issued"; pick: number } | { kind: "unknown" } | { kind: "foreign" };

function holdIdOfRef(m: Model, ref: HoldRef): number {
  if (ref.kind === "issued" && m.issued.length > 0) return m.issued[ref.pick % m.issued.length]!;
  if (ref.kind === "foreign") return holdIdOf(1, (pid + 1) % partitionCount);
  return holdIdOf(1_000_000, pid);
}

class Release implements Cmd {
  constructor(readonly ref: HoldRef) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const holdId = holdIdOfRef(m, this.ref);
    const hold = m.open.get(holdId);
    let expected: Answer;
    if (hold === undefined) expected = m.gone(holdId);
    else {
      for (const l of hold.lines) {
        const p = m.posOrNew(l.productId, l.warehouseId);
        p.available += l.quantity;
        p.reserved -= l.quantity;
      }
      m.close(hold, "HOLD_RELEASED");
      m.event();
      expected = { ok: true, holdId };
    }
    const got = r.p.release({ holdId }, m.now);
    expect(reduce(got, (x) => ({ holdId: x.holdId }))).toEqual(expected);
    compareState(m, r);
  }
  toString(): string {
    return `Release(${JSON.stringify(this.ref)})`;
  }
}

/** Fulfil quantities: none (every unit), derived from the hold's lines so
 * that most are in range, or raw values. */
type QuantitiesSpec =
  | { kind: "none" }
  | { kind: "derived"; picks: number[] }
  | { kind: "raw"; values: number[] };

class Fulfil implements Cmd {
  constructor(
    readonly ref: HoldRef,
    readonly spec: QuantitiesSpec,
  ) {}
  check(): boolean {
    return true;
  }
  quantities(hold: MHold | undefined): number[] | undefined {
    if (this.spec.kind === "none") return undefined;
    if (this.spec.kind === "raw") return [...this.spec.values];
    // Each pick lands in 0..held+1: mostly valid, sometimes one above.
    return this.spec.picks.map((x, i) => x % ((hold?.lines[i]?.quantity ?? 1) + 2));
  }
  expect(
    m: Model,
    holdId: number,
    hold: MHold | undefined,
    quantities: number[] | undefined,
  ): Answer {
    if (quantities !== undefined && !quantities.every((q) => isQuantity(q, 0))) return invalid();
    if (hold === undefined) return m.gone(holdId);
    if (quantities !== undefined) {
      if (quantities.length !== hold.lines.length) return invalid();
      if (quantities.some((q, i) => q > hold.lines[i]!.quantity)) return invalid();
    }
    const taken = quantities ?? hold.lines.map((l) => l.quantity);
    hold.lines.forEach((l, i) => {
      const p = m.posOrNew(l.productId, l.warehouseId);
      const f = taken[i]!;
      p.reserved -= l.quantity;
      p.available += l.quantity - f;
      p.fulfilled += f;
    });
    m.close(hold, "HOLD_FULFILLED");
    m.event();
    return { ok: true, holdId, quantities: taken };
  }
  run(m: Model, r: Real): void {
    const holdId = holdIdOfRef(m, this.ref);
    const hold = m.open.get(holdId);
    const quantities = this.quantities(hold);
    const expected = this.expect(m, holdId, hold, quantities);
    const cmd: { holdId: number; quantities?: number[] } = { holdId };
    if (quantities !== undefined) cmd.quantities = quantities;
    const got = r.p.fulfil(cmd, m.now);
    expect(reduce(got, (x) => ({ holdId: x.holdId, quantities: x.quantities }))).toEqual(expected);
    compareState(m, r);
  }
  toString(): string {
    return `Fulfil(${JSON.stringify(this.ref)}, ${JSON.stringify(this.spec)})`;
  }
}

class AdvanceAndExpire implements Cmd {
  constructor(readonly deltaMs: number) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    m.now += this.deltaMs;
    const due = [...m.open.values()].filter((h) => h.expireTimeMs <= m.now);
    for (const hold of due) {
      for (const l of hold.lines) {
        const p = m.posOrNew(l.productId, l.warehouseId);
        p.available += l.quantity;
        p.reserved -= l.quantity;
      }
      m.close(hold, "HOLD_EXPIRED");
      m.event();
    }
    const events = r.p.outbox.length;
    expect(r.p.expire(m.now)).toBe(due.length);
    // Each due hold is journaled once, released with reason EXPIRED.
    const released = r.p.outbox
      .slice(events)
      .map((e) =>
        e.type === EventType.HoldReleased ? `${e.holdId}:${e.reason}` : `type ${e.type}`,
      );
    const dueIds = due.map((h) => `${h.holdId}:${ReleaseReason.Expired}`);
    expect(released.sort()).toEqual(dueIds.sort());
    compareState(m, r);
  }
  toString(): string {
    return `AdvanceAndExpire(${this.deltaMs})`;
  }
}

// ---- arbitraries ---------------------------------------------------------------

/** Quantities biased to the edges: 0, 1, max-1, max, negative, non-integer. */
const quantity = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 12 }) },
  { weight: 3, arbitrary: fc.constantFrom(1, quantityMax - 1, quantityMax) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      0,
      -1,
      -quantityMax,
      quantityMax + 1,
      2 ** 53,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
    ),
  },
  { weight: 1, arbitrary: fc.double({ min: -20, max: 20, noInteger: true, noNaN: true }) },
);
const product = fc.integer({ min: 0, max: products.length - 1 });
const warehouse = fc.integer({ min: 0, max: warehouses.length - 1 });
const holdRef: fc.Arbitrary<HoldRef> = fc.oneof(
  { weight: 8, arbitrary: fc.nat().map((pick) => ({ kind: "issued" as const, pick })) },
  { weight: 1, arbitrary: fc.constant({ kind: "unknown" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "foreign" as const }) },
);
const fulfilQuantity = fc.oneof(
  fc.constantFrom(0, 1, 2, quantityMax, -1, 0.5, Number.NaN),
  fc.nat(20),
);
const quantitiesSpec: fc.Arbitrary<QuantitiesSpec> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: "none" as const }) },
  {
    weight: 4,
    arbitrary: fc
      .array(fc.nat(), { minLength: 1, maxLength: 3 })
      .map((picks) => ({ kind: "derived" as const, picks })),
  },
  {
    weight: 1,
    arbitrary: fc
      .array(fulfilQuantity, { maxLength: 4 })
      .map((values) => ({ kind: "raw" as const, values })),
  },
);
const advanceMs = fc.oneof(
  fc.constantFrom(0, 1, 9, 10, 11, 999, holdDurationMs - 1, holdDurationMs, idempotencyWindowMs),
  fc.constantFrom(3_600_000, limits.holdDurationMsMax),
  fc.integer({ min: 0, max: 50_000 }),
);

const commands = [
  fc.tuple(product, warehouse, quantity).map(([p, w, q]) => new Receive(p, w, q)),
  fc
    .tuple(product, warehouse, fc.integer({ min: 1, max: 30 }))
    .map(([p, w, q]) => new Receive(p, w, q)),
  fc
    .tuple(
      product,
      warehouse,
      fc.oneof(
        quantity,
        quantity.map((q) => -q),
      ),
      fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(1, 2, 3, 4, 5) },
        { weight: 1, arbitrary: fc.constantFrom(0, 6, 99) },
      ),
    )
    .map(([p, w, d, reason]) => new Adjust(p, w, d, reason)),
  fc
    .tuple(
      fc.array(fc.record({ product, warehouse, quantity }), { minLength: 1, maxLength: 3 }),
      fc.option(fc.constantFrom(...requestIds), { nil: undefined, freq: 2 }),
      fc.option(fc.constantFrom(1, 10, 999, 20_000, 45_000, 200_000, limits.holdDurationMsMax, 0), {
        nil: undefined,
        freq: 2,
      }),
    )
    .map(([specs, requestId, duration]) => new Reserve(specs, requestId, duration)),
  fc
    .tuple(product, warehouse, quantity)
    .map(
      ([p, w, q]) => new Reserve([{ product: p, warehouse: w, quantity: q }], undefined, undefined),
    ),
  fc
    .tuple(product, warehouse, quantity, fc.constantFrom(...requestIds))
    .map(([p, w, q, k]) => new Reserve([{ product: p, warehouse: w, quantity: q }], k, undefined)),
  fc.nat().map((pick) => new Retry(pick)),
  holdRef.map((ref) => new Release(ref)),
  fc.tuple(holdRef, quantitiesSpec).map(([ref, spec]) => new Fulfil(ref, spec)),
  fc.tuple(holdRef, quantitiesSpec).map(([ref, spec]) => new Fulfil(ref, spec)),
  advanceMs.map((d) => new AdvanceAndExpire(d)),
];

function setup(): { model: Model; real: Real } {
  return {
    model: new Model(),
    real: { p: new Partition(pid, { partitionCount, holdDurationMs, idempotencyWindowMs }) },
  };
}

describe("Partition against a reference model", () => {
  it("answers every command as the model does", () => {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 80, size: "max" }), (cmds) => {
        fc.modelRun(setup, cmds);
      }),
      { numRuns: 400 },
    );
  });

  it("replays its journal into the same state after any run", () => {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 80, size: "max" }), (cmds) => {
        const s = setup();
        fc.modelRun(() => s, cmds);
        const copy = new Partition(pid, { partitionCount, holdDurationMs, idempotencyWindowMs });
        for (const e of s.real.p.outbox) copy.apply(e);
        expect(digestPartition(copy)).toBe(digestPartition(s.real.p));
        copy.checkInvariants();
      }),
      { numRuns: 150 },
    );
  });
});
