import { describe, expect, it } from "vitest";
import {
  AdjustmentReason,
  digestPartition,
  ErrorCode,
  type Event,
  EventType,
  type Failure,
  holdIdOf,
  type Line,
  limits,
  Partition,
  type PartitionConfig,
  partitionOf,
  partitionOfHold,
  ReleaseReason,
  type Reservation,
} from "../../src/engine/index.ts";

const partitionCount = 4;
const pid = 1;
const T0 = 1_700_000_000_000;
const minuteMs = 60_000;

function productsIn(partition: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const id = `sku-${i}`;
    if (partitionOf(id, partitionCount) === partition) out.push(id);
  }
  return out;
}

const [A, B, C] = productsIn(pid, 3) as [string, string, string];
const [FOREIGN] = productsIn(pid + 1, 1) as [string];
const W1 = "w1";
const W2 = "w2";

function fresh(config: Partial<PartitionConfig> = {}): Partition {
  return new Partition(pid, { partitionCount, ...config });
}

function expectOk<T extends { ok: boolean }>(r: T): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r as Extract<T, { ok: true }>;
}

function expectFail(r: { ok: boolean }, code: string): Failure {
  if (r.ok) throw new Error(`expected ${code}, got ${JSON.stringify(r)}`);
  const f = r as Failure;
  expect(f.code, f.message).toBe(code);
  expect(f.message.length).toBeGreaterThan(0);
  return f;
}

function line(productId: string, warehouseId: string, quantity: number): Line {
  return { productId, warehouseId, quantity };
}

function stock(p: Partition, productId: string, warehouseId: string, quantity: number, now = T0) {
  expectOk(p.receiveStock({ productId, warehouseId, quantity }, now));
}

function reserve(
  p: Partition,
  lines: Line[],
  now = T0,
  extra: { requestId?: string; holdDurationMs?: number } = {},
): Reservation {
  return expectOk(p.reserve({ lines, ...extra }, now)).reservation;
}

function at(p: Partition, productId: string, warehouseId: string) {
  const v = p.position(productId, warehouseId);
  return v === null ? null : { available: v.available, reserved: v.reserved };
}

/** Applies the events to a new partition with the same configuration. */
function replay(events: Event[], config: Partial<PartitionConfig> = {}): Partition {
  const p = fresh(config);
  for (const e of events) p.apply(e);
  return p;
}

/** Runs `f` and checks that it changed nothing: no event, same digest. */
function unchanged(p: Partition, f: () => void): void {
  const before = digestPartition(p);
  const outbox = p.outbox.length;
  f();
  expect(p.outbox.length).toBe(outbox);
  expect(digestPartition(p)).toBe(before);
}

describe("Partition: receive", () => {
  it("adds to available and received, and journals StockReceived", () => {
    const p = fresh();
    const r = expectOk(p.receiveStock({ productId: A, warehouseId: W1, quantity: 5 }, T0));
    expect(r.position).toEqual({
      productId: A,
      warehouseId: W1,
      available: 5,
      reserved: 0,
      received: 5,
      adjusted: 0,
      fulfilled: 0,
    });
    stock(p, A, W1, 7, T0 + 1);
    expect(p.position(A, W1)).toMatchObject({ available: 12, received: 12 });
    expect(p.position(A, W2)).toBeNull();
    expect(p.outbox).toMatchObject([
      {
        type: EventType.StockReceived,
        seq: 1,
        timeMs: T0,
        productId: A,
        warehouseId: W1,
        quantity: 5,
      },
      {
        type: EventType.StockReceived,
        seq: 2,
        timeMs: T0 + 1,
        productId: A,
        warehouseId: W1,
        quantity: 7,
      },
    ]);
    expect(p.seq).toBe(2);
    p.checkInvariants();
  });

  it("accepts exactly quantityMax in one command", () => {
    const p = fresh();
    stock(p, A, W1, limits.quantityMax);
    expect(at(p, A, W1)).toEqual({ available: limits.quantityMax, reserved: 0 });
  });

  it("refuses a product of another partition and changes nothing", () => {
    const p = fresh();
    unchanged(p, () => {
      const f = expectFail(
        p.receiveStock({ productId: FOREIGN, warehouseId: W1, quantity: 1 }, T0),
        ErrorCode.InvalidArgument,
      );
      expect(f.message).toContain(FOREIGN);
    });
  });

  it("never dates an event before the previous one", () => {
    const p = fresh();
    stock(p, A, W1, 1, T0 + 500);
    stock(p, A, W1, 1, T0); // the caller's clock went back
    expect(p.outbox.map((e) => e.timeMs)).toEqual([T0 + 500, T0 + 500]);
    expect(p.timeMs).toBe(T0 + 500);
  });
});

describe("Partition: adjust", () => {
  const reasons = Object.values(AdjustmentReason);

  it.each(reasons)("applies reason %i in both directions and journals it", (reason) => {
    const p = fresh();
    stock(p, A, W1, 10);
    const up = expectOk(p.adjustStock({ productId: A, warehouseId: W1, delta: 3, reason }, T0));
    expect(up.position).toMatchObject({ available: 13, adjusted: 3, received: 10 });
    const down = expectOk(p.adjustStock({ productId: A, warehouseId: W1, delta: -13, reason }, T0));
    expect(down.position).toMatchObject({ available: 0, adjusted: -10, received: 10 });
    const events = p.outbox.filter((e) => e.type === EventType.StockAdjusted);
    expect(events).toMatchObject([
      {
        type: EventType.StockAdjusted,
        seq: 2,
        timeMs: T0,
        productId: A,
        warehouseId: W1,
        delta: 3,
        reason,
      },
      {
        type: EventType.StockAdjusted,
        seq: 3,
        timeMs: T0,
        productId: A,
        warehouseId: W1,
        delta: -13,
        reason,
      },
    ]);
    p.checkInvariants();
  });

  it("creates a position on a positive adjustment (stock found)", () => {
    const p = fresh();
    expectOk(
      p.adjustStock(
        { productId: B, warehouseId: W2, delta: 4, reason: AdjustmentReason.Found },
        T0,
      ),
    );
    expect(p.position(B, W2)).toMatchObject({ available: 4, received: 0, adjusted: 4 });
  });

  it("refuses to take available below zero, naming what is available", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    reserve(p, [line(A, W1, 4)]);
    unchanged(p, () => {
      // 6 available, 4 reserved: reserved units cannot be adjusted away.
      const f = expectFail(
        p.adjustStock(
          { productId: A, warehouseId: W1, delta: -7, reason: AdjustmentReason.Damage },
          T0,
        ),
        ErrorCode.InsufficientStock,
      );
      expect(f.available).toBe(6);
    });
    expectOk(
      p.adjustStock(
        { productId: A, warehouseId: W1, delta: -6, reason: AdjustmentReason.Damage },
        T0,
      ),
    );
    expect(at(p, A, W1)).toEqual({ available: 0, reserved: 4 });
  });

  it("refuses a negative adjustment of an unknown position without creating it", () => {
    const p = fresh();
    unchanged(p, () => {
      const f = expectFail(
        p.adjustStock(
          { productId: C, warehouseId: W1, delta: -1, reason: AdjustmentReason.Loss },
          T0,
        ),
        ErrorCode.InsufficientStock,
      );
      expect(f.available).toBe(0);
    });
    expect(p.position(C, W1)).toBeNull();
  });
});

describe("Partition: reserve", () => {
  it("holds one line: available down, reserved up, StockReserved journaled", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    const r = reserve(p, [line(A, W1, 3)], T0 + 10);
    expect(r.holdId).toBe(holdIdOf(2, pid));
    expect(partitionOfHold(r.holdId)).toBe(pid);
    expect(r.expireTimeMs).toBe(T0 + 10 + limits.holdDurationMsDefault);
    expect(r.replayed).toBe(false);
    expect(r.lines).toEqual([line(A, W1, 3)]);
    expect(at(p, A, W1)).toEqual({ available: 7, reserved: 3 });
    expect(p.outbox.at(-1)).toMatchObject({
      type: EventType.StockReserved,
      seq: 2,
      timeMs: T0 + 10,
      holdId: r.holdId,
      expireTimeMs: r.expireTimeMs,
      requestId: "",
      lines: [line(A, W1, 3)],
    });
    expect(p.hold(r.holdId)).toMatchObject({
      holdId: r.holdId,
      status: "OPEN",
      expireTimeMs: r.expireTimeMs,
      requestId: "",
      lines: [line(A, W1, 3)],
    });
    p.checkInvariants();
  });

  it("uses the hold duration asked for, else the partition's", () => {
    const p = fresh({ holdDurationMs: 5 * minuteMs });
    stock(p, A, W1, 10);
    expect(reserve(p, [line(A, W1, 1)]).expireTimeMs).toBe(T0 + 5 * minuteMs);
    expect(reserve(p, [line(A, W1, 1)], T0, { holdDurationMs: 1 }).expireTimeMs).toBe(T0 + 1);
    const max = limits.holdDurationMsMax;
    expect(reserve(p, [line(A, W1, 1)], T0, { holdDurationMs: max }).expireTimeMs).toBe(T0 + max);
  });

  it("holds several lines in one hold", () => {
    const p = fresh();
    stock(p, A, W1, 5);
    stock(p, A, W2, 5);
    stock(p, B, W1, 5);
    const r = reserve(p, [line(A, W1, 5), line(A, W2, 1), line(B, W1, 2)]);
    expect(at(p, A, W1)).toEqual({ available: 0, reserved: 5 });
    expect(at(p, A, W2)).toEqual({ available: 4, reserved: 1 });
    expect(at(p, B, W1)).toEqual({ available: 3, reserved: 2 });
    expect(p.holdCount).toBe(1);
    const view = p.hold(r.holdId);
    expect(view?.status === "OPEN" ? view.lines : null).toEqual(r.lines);
    p.checkInvariants();
  });

  it("is all or nothing: a refused multi-line reserve changes nothing", () => {
    const p = fresh();
    stock(p, A, W1, 5);
    stock(p, B, W1, 2);
    p.takeOutbox();
    unchanged(p, () => {
      const f = expectFail(
        p.reserve({ lines: [line(A, W1, 5), line(B, W1, 3), line(C, W1, 1)] }, T0),
        ErrorCode.OutOfStock,
      );
      expect(f.lineIndex).toBe(1);
      expect(f.available).toBe(2);
      expect(f.message).toContain(B);
    });
    expect(at(p, A, W1)).toEqual({ available: 5, reserved: 0 });
    expect(p.holdCount).toBe(0);
  });

  it("names an unknown position as out of stock with 0 available", () => {
    const p = fresh();
    stock(p, A, W1, 5);
    unchanged(p, () => {
      const f = expectFail(
        p.reserve({ lines: [line(A, W1, 1), line(A, W2, 1)] }, T0),
        ErrorCode.OutOfStock,
      );
      expect(f).toMatchObject({ lineIndex: 1, available: 0 });
    });
    expect(p.position(A, W2)).toBeNull();
  });

  it("holds exactly what is available and refuses one more", () => {
    const p = fresh();
    stock(p, A, W1, 3);
    reserve(p, [line(A, W1, 3)]);
    const f = expectFail(p.reserve({ lines: [line(A, W1, 1)] }, T0), ErrorCode.OutOfStock);
    expect(f).toMatchObject({ lineIndex: 0, available: 0 });
  });

  it("refuses lines of another partition", () => {
    const p = fresh();
    stock(p, A, W1, 3);
    unchanged(p, () => {
      expectFail(
        p.reserve({ lines: [line(A, W1, 1), line(FOREIGN, W1, 1)] }, T0),
        ErrorCode.InvalidArgument,
      );
    });
  });
});

describe("Partition: release", () => {
  it("returns the units and closes the hold as RELEASED", () => {
    const p = fresh();
    stock(p, A, W1, 5);
    stock(p, B, W2, 5);
    const r = reserve(p, [line(A, W1, 2), line(B, W2, 5)]);
    const ok = expectOk(p.release({ holdId: r.holdId }, T0 + 7));
    expect(ok.holdId).toBe(r.holdId);
    expect(at(p, A, W1)).toEqual({ available: 5, reserved: 0 });
    expect(at(p, B, W2)).toEqual({ available: 5, reserved: 0 });
    expect(p.outbox.at(-1)).toMatchObject({
      type: EventType.HoldReleased,
      seq: 4,
      timeMs: T0 + 7,
      holdId: r.holdId,
      reason: ReleaseReason.Released,
    });
    expect(p.hold(r.holdId)).toEqual({ holdId: r.holdId, status: "RELEASED", closeTimeMs: T0 + 7 });
    expect(p.wheel.count).toBe(0);
    p.checkInvariants();
  });

  it("answers HOLD_RELEASED for a released hold, to release and fulfil alike", () => {
    const p = fresh();
    stock(p, A, W1, 5);
    const r = reserve(p, [line(A, W1, 2)]);
    expectOk(p.release({ holdId: r.holdId }, T0));
    unchanged(p, () => {
      expectFail(p.release({ holdId: r.holdId }, T0 + 1), ErrorCode.HoldReleased);
      expectFail(p.fulfil({ holdId: r.holdId }, T0 + 1), ErrorCode.HoldReleased);
    });
  });

  it("answers HOLD_NOT_FOUND for a hold never made, here or in another partition", () => {
    const p = fresh();
    stock(p, A, W1, 5);
    const r = reserve(p, [line(A, W1, 2)]);
    unchanged(p, () => {
      expectFail(p.release({ holdId: holdIdOf(999, pid) }, T0), ErrorCode.HoldNotFound);
      expectFail(p.fulfil({ holdId: holdIdOf(999, pid) }, T0), ErrorCode.HoldNotFound);
      // Same sequence number, other partition.
      expectFail(p.release({ holdId: r.holdId + 1 }, T0), ErrorCode.HoldNotFound);
    });
    expect(p.hold(holdIdOf(999, pid))).toBeNull();
  });
});

describe("Partition: fulfil", () => {
  it("fulfils every unit by default", () => {
    const p = fresh();
    stock(p, A, W1, 5);
    stock(p, B, W1, 5);
    const r = reserve(p, [line(A, W1, 2), line(B, W1, 3)]);
    const ok = expectOk(p.fulfil({ holdId: r.holdId }, T0 + 3));
    expect(ok.quantities).toEqual([2, 3]);
    expect(p.position(A, W1)).toMatchObject({ available: 3, reserved: 0, fulfilled: 2 });
    expect(p.position(B, W1)).toMatchObject({ available: 2, reserved: 0, fulfilled: 3 });
    expect(p.outbox.at(-1)).toMatchObject({
      type: EventType.HoldFulfilled,
      seq: 4,
      timeMs: T0 + 3,
      holdId: r.holdId,
      quantities: [2, 3],
    });
    expect(p.hold(r.holdId)).toEqual({
      holdId: r.holdId,
      status: "FULFILLED",
      closeTimeMs: T0 + 3,
    });
    unchanged(p, () => {
      expectFail(p.fulfil({ holdId: r.holdId }, T0 + 4), ErrorCode.HoldFulfilled);
      expectFail(p.release({ holdId: r.holdId }, T0 + 4), ErrorCode.HoldFulfilled);
    });
    p.checkInvariants();
  });

  it("fulfils part of a hold and returns the rest to available", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    stock(p, B, W2, 10);
    const r = reserve(p, [line(A, W1, 4), line(B, W2, 6)]);
    const ok = expectOk(p.fulfil({ holdId: r.holdId, quantities: [1, 0] }, T0));
    expect(ok.quantities).toEqual([1, 0]);
    expect(p.position(A, W1)).toMatchObject({ available: 9, reserved: 0, fulfilled: 1 });
    expect(p.position(B, W2)).toMatchObject({ available: 10, reserved: 0, fulfilled: 0 });
    expect(p.holdCount).toBe(0);
    p.checkInvariants();
  });

  it("fulfils exactly the held quantity when asked for it", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    const r = reserve(p, [line(A, W1, 4)]);
    expectOk(p.fulfil({ holdId: r.holdId, quantities: [4] }, T0));
    expect(p.position(A, W1)).toMatchObject({ available: 6, fulfilled: 4 });
  });

  it("refuses quantities that do not match the hold, and keeps it open", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    stock(p, B, W1, 10);
    const r = reserve(p, [line(A, W1, 4), line(B, W1, 2)]);
    unchanged(p, () => {
      const longer = expectFail(
        p.fulfil({ holdId: r.holdId, quantities: [1, 1, 1] }, T0),
        ErrorCode.InvalidArgument,
      );
      expect(longer.message).toMatch(/3 entries.*2 lines/);
      const shorter = expectFail(
        p.fulfil({ holdId: r.holdId, quantities: [1] }, T0),
        ErrorCode.InvalidArgument,
      );
      expect(shorter.message).toMatch(/1 entries.*2 lines/);
      expectFail(p.fulfil({ holdId: r.holdId, quantities: [] }, T0), ErrorCode.InvalidArgument);
      const above = expectFail(
        p.fulfil({ holdId: r.holdId, quantities: [4, 3] }, T0),
        ErrorCode.InvalidArgument,
      );
      expect(above.message).toMatch(/quantities\[1\] is 3; the line holds only 2/);
    });
    expect(p.hold(r.holdId)?.status).toBe("OPEN");
  });
});

describe("Partition: expire", () => {
  it("expires holds at their deadline, journaled as released with reason EXPIRED", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    const early = reserve(p, [line(A, W1, 1)], T0, { holdDurationMs: 1_000 });
    const late = reserve(p, [line(A, W1, 2)], T0, { holdDurationMs: 5_000 });
    p.takeOutbox();
    expect(p.expire(T0 + 999)).toBe(0);
    expect(p.outbox).toEqual([]);
    expect(p.expire(T0 + 1_000)).toBe(1);
    expect(p.outbox).toMatchObject([
      {
        type: EventType.HoldReleased,
        seq: 4,
        timeMs: T0 + 1_000,
        holdId: early.holdId,
        reason: ReleaseReason.Expired,
      },
    ]);
    expect(at(p, A, W1)).toEqual({ available: 8, reserved: 2 });
    expect(p.hold(early.holdId)).toEqual({
      holdId: early.holdId,
      status: "EXPIRED",
      closeTimeMs: T0 + 1_000,
    });
    expect(p.hold(late.holdId)?.status).toBe("OPEN");
    unchanged(p, () => {
      expectFail(p.release({ holdId: early.holdId }, T0 + 1_001), ErrorCode.HoldExpired);
      expectFail(p.fulfil({ holdId: early.holdId }, T0 + 1_001), ErrorCode.HoldExpired);
    });
    p.checkInvariants();
  });

  it("expires at most countMax holds per pulse; the next pulses take the rest", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    const holds = [1, 2, 3, 4, 5].map(() =>
      reserve(p, [line(A, W1, 1)], T0, { holdDurationMs: 100 }),
    );
    p.takeOutbox();
    const counts = [
      p.expire(T0 + 3_600_000, 2),
      p.expire(T0 + 3_600_000, 2),
      p.expire(T0 + 3_600_000, 2),
    ];
    expect(counts).toEqual([2, 2, 1]);
    expect(p.expire(T0 + 3_600_000, 2)).toBe(0);
    const released = p.outbox.map((e) => (e.type === EventType.HoldReleased ? e.holdId : 0));
    expect(released.sort((a, b) => a - b)).toEqual(holds.map((h) => h.holdId));
    expect(at(p, A, W1)).toEqual({ available: 10, reserved: 0 });
    p.checkInvariants();
  });

  it("expires holds whose deadline passed long ago (clock jumped by hours)", () => {
    const p = fresh();
    stock(p, A, W1, 100);
    for (let i = 0; i < 50; i++)
      reserve(p, [line(A, W1, 1)], T0 + i * 1_000, { holdDurationMs: 60_000 + i * 97 });
    let expired = 0;
    for (;;) {
      const n = p.expire(T0 + 5 * 3_600_000, 8);
      expired += n;
      if (n < 8) break;
    }
    expect(expired).toBe(50);
    expect(at(p, A, W1)).toEqual({ available: 100, reserved: 0 });
  });

  it("gives back the hold table after a peak; holds moved keep their deadlines and pins", () => {
    const p = fresh({ paranoid: false });
    stock(p, A, W1, 20_000);
    const ids: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      // Deadlines spread over 10 s, so the wheel's slots hold many holds each.
      ids.push(
        reserve(p, [line(A, W1, 1)], T0, { holdDurationMs: 1_000 + (i % 10) * 1_000 }).holdId,
      );
    }
    p.takeOutbox();
    const peak = p.holdCapacity;
    expect(peak).toBeGreaterThanOrEqual(10_000);
    const kept = ids.filter((_, i) => i % 100 === 0);
    const pinned = kept.filter((_, i) => i % 2 === 0);
    for (const id of pinned) expectOk(p.pin({ holdId: id }, T0));
    for (const id of ids) if (!kept.includes(id)) expectOk(p.release({ holdId: id }, T0));
    p.takeOutbox();
    expect(p.holdCount).toBe(kept.length);
    expect(p.holdCapacity).toBeLessThanOrEqual(peak / 8);
    p.checkInvariants();
    expect(at(p, A, W1)).toEqual({ available: 20_000 - kept.length, reserved: kept.length });
    // Each unpinned hold expires at its own deadline, none earlier; pinned
    // holds do not expire.
    for (let s = 1; s <= 10; s++) {
      const now = T0 + s * 1_000;
      p.expire(now - 1);
      const expiredBefore = p.outbox.length;
      p.expire(now);
      const expired = p.outbox.slice(expiredBefore);
      const due = kept.filter(
        (id) => !pinned.includes(id) && 1_000 + (ids.indexOf(id) % 10) * 1_000 === s * 1_000,
      );
      expect(new Set(expired.map((e) => (e as { holdId: number }).holdId))).toEqual(new Set(due));
      p.checkInvariants();
    }
    expect(p.holdCount).toBe(pinned.length);
    for (const id of pinned) expect(p.hold(id)?.status).toBe("OPEN");
    // The moved holds are still found by id, released and fulfilled.
    expectOk(p.fulfil({ holdId: pinned[0]! }, T0 + 20_000));
    expectOk(p.release({ holdId: pinned[1]! }, T0 + 20_000));
    expect(p.holdCount).toBe(pinned.length - 2);
    p.checkInvariants();
  });

  it("expires several holds in one pulse of a paranoid partition", () => {
    // With `paranoid: true` every apply() checks the whole partition. A pulse
    // that expires two holds must not trip that check half way.
    const p = fresh({ paranoid: true });
    stock(p, A, W1, 10);
    reserve(p, [line(A, W1, 1)], T0, { holdDurationMs: 100 });
    reserve(p, [line(A, W1, 1)], T0, { holdDurationMs: 100 });
    p.takeOutbox();
    let thrown: unknown = null;
    let expired = -1;
    try {
      expired = p.expire(T0 + 1_000);
    } catch (err) {
      thrown = err;
    }
    expect(thrown, "expire threw").toBeNull();
    expect(expired).toBe(2);
    expect(p.outbox.length).toBe(2);
    expect(p.holdCount).toBe(0);
    p.checkInvariants();
  });
});

describe("Partition: idempotency", () => {
  it("returns the first answer to the same request id, with no new event", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    const first = reserve(p, [line(A, W1, 3)], T0, { requestId: "order-1" });
    expect(first.replayed).toBe(false);
    unchanged(p, () => {
      const again = reserve(p, [line(A, W1, 3)], T0 + 5_000, { requestId: "order-1" });
      expect(again).toEqual({ ...first, replayed: true });
    });
    expect(at(p, A, W1)).toEqual({ available: 7, reserved: 3 });
  });

  it("still returns the first answer after the hold has ended", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    const first = reserve(p, [line(A, W1, 3)], T0, { requestId: "order-1" });
    expectOk(p.release({ holdId: first.holdId }, T0));
    unchanged(p, () => {
      expect(reserve(p, [line(A, W1, 3)], T0, { requestId: "order-1" })).toEqual({
        ...first,
        replayed: true,
      });
    });
  });

  it("refuses the same request id with other lines", () => {
    const p = fresh();
    stock(p, A, W1, 10);
    stock(p, B, W1, 10);
    const first = reserve(p, [line(A, W1, 3)], T0, { requestId: "order-1" });
    unchanged(p, () => {
      for (const lines of [
        [line(A, W1, 2)],
        [line(A, W2, 3)],
        [line(B, W1, 3)],
        [line(A, W1, 3), line(B, W1, 1)],
      ]) {
        const f = expectFail(
          p.reserve({ lines, requestId: "order-1" }, T0),
          ErrorCode.RequestIdReused,
        );
        expect(f.message).toContain(String(first.holdId));
      }
    });
  });

  it("remembers a refused keyed reserve and answers it the same", () => {
    const p = fresh();
    stock(p, A, W1, 2);
    stock(p, B, W1, 1);
    p.takeOutbox();
    const f1 = expectFail(
      p.reserve({ lines: [line(A, W1, 1), line(B, W1, 5)], requestId: "cart-9" }, T0),
      ErrorCode.OutOfStock,
    );
    expect(f1).toMatchObject({ lineIndex: 1, available: 1 });
    expect(p.outbox).toMatchObject([
      {
        type: EventType.ReservationRefused,
        seq: 3,
        timeMs: T0,
        requestId: "cart-9",
        lineIndex: 1,
        available: 1,
      },
    ]);
    expect(at(p, A, W1)).toEqual({ available: 2, reserved: 0 });
    // Stock arrives; the same request still gets the first answer.
    stock(p, B, W1, 100);
    unchanged(p, () => {
      const f2 = expectFail(
        p.reserve({ lines: [line(A, W1, 1), line(B, W1, 5)], requestId: "cart-9" }, T0 + 1),
        ErrorCode.OutOfStock,
      );
      expect(f2).toMatchObject({ lineIndex: 1, available: 1 });
    });
    // An unkeyed refusal journals nothing.
    unchanged(p, () => {
      expectFail(p.reserve({ lines: [line(C, W1, 1)] }, T0 + 1), ErrorCode.OutOfStock);
    });
  });

  it("refuses a refused request id reused for other lines", () => {
    // The first answer was "line 0: 5 of A requested, 3 available". The same
    // id with 3 units of A is another request; answering it "3 requested, 3
    // available, out of stock" contradicts itself.
    const p = fresh();
    stock(p, A, W1, 3);
    expectFail(
      p.reserve({ lines: [line(A, W1, 5)], requestId: "cart-7" }, T0),
      ErrorCode.OutOfStock,
    );
    unchanged(p, () => {
      const f = p.reserve({ lines: [line(A, W1, 3)], requestId: "cart-7" }, T0);
      expect(f.ok).toBe(false);
      expect((f as Failure).code, (f as Failure).message).toBe(ErrorCode.RequestIdReused);
    });
  });

  it("forgets a request id once the idempotency window has passed", () => {
    const windowMs = 10 * minuteMs;
    const p = fresh({ idempotencyWindowMs: windowMs, holdDurationMs: minuteMs });
    stock(p, A, W1, 10);
    const first = reserve(p, [line(A, W1, 3)], T0, { requestId: "order-1" });
    // One ms before the end of the window: still remembered.
    expect(reserve(p, [line(A, W1, 3)], T0 + windowMs - 1, { requestId: "order-1" }).replayed).toBe(
      true,
    );
    // At the end of the window: a new request, a new hold.
    const second = reserve(p, [line(A, W1, 3)], T0 + windowMs, { requestId: "order-1" });
    expect(second.replayed).toBe(false);
    expect(second.holdId).not.toBe(first.holdId);
    // From now on the key stands for the second hold.
    expect(reserve(p, [line(A, W1, 3)], T0 + windowMs + 1, { requestId: "order-1" })).toEqual({
      ...second,
      replayed: true,
    });
    expectFail(
      p.reserve({ lines: [line(A, W1, 1)], requestId: "order-1" }, T0 + windowMs + 1),
      ErrorCode.RequestIdReused,
    );
    p.checkInvariants();
  });

  it("forgets a refused request id once the window has passed", () => {
    const windowMs = 10 * minuteMs;
    const p = fresh({ idempotencyWindowMs: windowMs });
    stock(p, A, W1, 1);
    expectFail(p.reserve({ lines: [line(A, W1, 2)], requestId: "k" }, T0), ErrorCode.OutOfStock);
    stock(p, A, W1, 1, T0 + 1);
    expectFail(
      p.reserve({ lines: [line(A, W1, 2)], requestId: "k" }, T0 + windowMs - 1),
      ErrorCode.OutOfStock,
    );
    expect(reserve(p, [line(A, W1, 2)], T0 + windowMs, { requestId: "k" }).replayed).toBe(false);
  });

  it("forgets how a hold ended once the window has passed", () => {
    const windowMs = 10 * minuteMs;
    const p = fresh({ idempotencyWindowMs: windowMs });
    stock(p, A, W1, 10);
    const r = reserve(p, [line(A, W1, 1)]);
    expectOk(p.release({ holdId: r.holdId }, T0 + 1));
    expectFail(p.release({ holdId: r.holdId }, T0 + windowMs), ErrorCode.HoldReleased);
    expectFail(p.release({ holdId: r.holdId }, T0 + 1 + windowMs), ErrorCode.HoldNotFound);
    // The record leaves memory with the next event after the window.
    stock(p, A, W1, 1, T0 + 1 + windowMs);
    expect(p.hold(r.holdId)).toBeNull();
    expect(p.closedHoldCount).toBe(0);
  });
});

describe("Partition: the state is a pure function of its events", () => {
  it("replays the outbox into the same digest", () => {
    const config = { idempotencyWindowMs: 30 * minuteMs, holdDurationMs: 2 * minuteMs };
    const p = fresh(config);
    let now = T0;
    const journal: Event[] = [];
    const take = () => journal.push(...p.takeOutbox());
    for (let round = 0; round < 40; round++) {
      now += 17_000;
      stock(p, A, W1, 3, now);
      stock(p, B, W2, 2, now);
      p.adjustStock(
        {
          productId: A,
          warehouseId: W1,
          delta: round % 2 === 0 ? 1 : -1,
          reason: AdjustmentReason.CountCorrection,
        },
        now,
      );
      const r = p.reserve(
        { lines: [line(A, W1, 2), line(B, W2, 1)], requestId: `r-${round % 7}` },
        now,
      );
      p.reserve({ lines: [line(C, W1, 1)], requestId: `c-${round % 5}` }, now);
      if (r.ok && !r.reservation.replayed) {
        if (round % 3 === 0) p.fulfil({ holdId: r.reservation.holdId, quantities: [1, 0] }, now);
        else if (round % 3 === 1) p.release({ holdId: r.reservation.holdId }, now);
      }
      p.expire(now);
      take();
      p.checkInvariants();
    }
    now += 3_600_000;
    p.expire(now);
    take();
    expect(journal.some((e) => e.type === EventType.ReservationRefused)).toBe(true);
    expect(
      journal.some((e) => e.type === EventType.HoldReleased && e.reason === ReleaseReason.Expired),
    ).toBe(true);
    expect(journal.map((e) => e.seq)).toEqual(journal.map((_, i) => i + 1));
    const copy = replay(journal, config);
    expect(digestPartition(copy)).toBe(digestPartition(p));
    copy.checkInvariants();
    // The copy answers as the original does.
    const q = { lines: [line(A, W1, 2), line(B, W2, 1)], requestId: "r-3" };
    expect(copy.reserve(q, now)).toEqual(p.reserve(q, now));
  });

  it("keeps its state apart from the answers it gives", () => {
    // An answer handed to a caller must not be a window into the partition:
    // a caller that edits it must change neither what the partition
    // remembers nor what it has yet to journal.
    const p = fresh();
    stock(p, A, W1, 10);
    const problems: string[] = [];
    const r = reserve(p, [line(A, W1, 2)], T0, { requestId: "k" });
    const digest = digestPartition(p);
    const journaled = structuredClone(p.outbox);
    r.lines[0]!.quantity = 7;
    if (digestPartition(p) !== digest) problems.push("editing reservation.lines changed the state");
    if (JSON.stringify(p.outbox) !== JSON.stringify(journaled)) {
      problems.push("editing reservation.lines changed an event in the outbox");
    }
    const again = p.reserve({ lines: [line(A, W1, 2)], requestId: "k" }, T0);
    if (!(again.ok && again.reservation.replayed)) {
      problems.push(`the retry of request k was answered ${JSON.stringify(again)}`);
    }
    const f = expectOk(p.fulfil({ holdId: r.holdId }, T0));
    const fulfilled = structuredClone(p.outbox.at(-1));
    f.quantities[0] = 0;
    if (JSON.stringify(p.outbox.at(-1)) !== JSON.stringify(fulfilled)) {
      problems.push("editing fulfil's quantities changed the HoldFulfilled event in the outbox");
    }
    expect(problems).toEqual([]);
  });
});

describe("Partition: limits", () => {
  it("counts units exactly: a receive never takes a position past 2^53", () => {
    // quantityMax bounds one command, not a position's total. About nine
    // million receives of quantityMax - 1 bring a position to 2^53; that
    // state is restored here directly, as a snapshot load would, instead of
    // sending those commands.
    const p = fresh();
    stock(p, A, W1, 1);
    const start = Number.MAX_SAFE_INTEGER - 4;
    const position = p.positionForRestore(A, W1);
    position.available = start;
    position.received = start;
    p.checkInvariants();
    let exact = BigInt(start);
    for (const q of [limits.quantityMax - 1, 1, 1, 3]) {
      const r = p.receiveStock({ productId: A, warehouseId: W1, quantity: q }, T0);
      if (!r.ok) {
        // Refused: then with a capacity code, changing nothing.
        expect(r.code).not.toBe(ErrorCode.InvalidArgument);
        expect(BigInt(p.position(A, W1)!.available)).toBe(exact);
        return;
      }
      // Accepted: then every unit must be counted.
      exact += BigInt(q);
      const available = r.position.available;
      expect(BigInt(available), `received ${q}: available ${available}, exactly ${exact}`).toBe(
        exact,
      );
    }
  });
});
