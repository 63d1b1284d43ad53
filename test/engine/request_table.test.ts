import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PositionIndex } from "../../src/engine/positions.ts";
import { type RequestRecord, RequestTable, requestHash } from "../../src/engine/request_table.ts";

// The remembered-request ring against a FIFO of plain records: the newest
// record of each id is found, older ones of a reused id are not, records
// leave oldest first, and the compact form reads back as the whole record.

function positions(): PositionIndex {
  const index = new PositionIndex();
  for (let i = 0; i < 4; i++) index.getOrAdd(`p${i}`, "w1");
  return index;
}

const opArb = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constantFrom("held" as const, "record" as const),
      // A small pool, so ids are reused (after their window, in the partition).
      id: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 100_000 })),
      position: fc.integer({ min: 0, max: 3 }),
      quantity: fc.integer({ min: 1, max: 0x7fff_ffff }),
      holdId: fc.integer({ min: 1, max: 2 ** 52 }),
      expireTimeMs: fc.integer({ min: 0, max: 2 ** 45 }),
    }),
    weight: 4,
  },
  { arbitrary: fc.constant({ kind: "drop" as const }), weight: 2 },
);

describe("RequestTable", () => {
  it("behaves as a FIFO of records with the newest of each id found", () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 300 }),
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        (ops, seed) => {
          const index = positions();
          const t = new RequestTable(index, seed, 2);
          const fifo: RequestRecord[] = [];
          let timeMs = 1_700_000_000_000;
          for (const op of ops) {
            if (op.kind === "drop") {
              if (fifo.length === 0) {
                expect(() => t.dropOldest()).toThrow(/empty/);
                continue;
              }
              t.dropOldest();
              fifo.shift();
            } else {
              timeMs += 7;
              const requestId = `req-${op.id}`;
              const p = index.at(op.position);
              const line = { productId: p.productId, warehouseId: p.warehouseId };
              if (op.kind === "held") {
                t.addHeld(requestId, timeMs, op.holdId, op.expireTimeMs, p, op.quantity);
                fifo.push({
                  requestId,
                  timeMs,
                  holdId: op.holdId,
                  expireTimeMs: op.expireTimeMs,
                  lines: [{ ...line, quantity: op.quantity }],
                  lineIndex: 0,
                  available: 0,
                });
              } else {
                const record = {
                  requestId,
                  timeMs,
                  holdId: 0,
                  expireTimeMs: 0,
                  lines: [
                    { ...line, quantity: op.quantity },
                    { ...line, quantity: 1 },
                  ],
                  lineIndex: 1,
                  available: op.position,
                };
                t.addRecord(record);
                fifo.push(record);
              }
            }
            expect(t.size).toBe(fifo.length);
            expect(t.oldestTimeMs()).toBe(fifo[0]?.timeMs ?? Number.NaN);
          }
          expect(t.toArray()).toEqual(fifo);
          const newest = new Map<string, RequestRecord>();
          for (const r of fifo) newest.set(r.requestId, r);
          for (let id = 0; id <= 12; id++) {
            const requestId = `req-${id}`;
            const slot = t.find(requestId);
            const want = newest.get(requestId);
            if (want === undefined) expect(slot).toBe(-1);
            else {
              expect(t.recordAt(slot)).toEqual(want);
              expect(t.timeAt(slot)).toBe(want.timeMs);
            }
          }
          for (const r of fifo) expect(t.find(r.requestId)).not.toBe(-1);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("finds ids of any length and alphabet, whatever the seed", () => {
    const index = positions();
    const ids = [
      "a",
      "order-1",
      "ORDER-1",
      "550e8400-e29b-41d4-a716-446655440000",
      "ключ-идемпотентности",
      "🙂".repeat(20),
      "x".repeat(128),
    ];
    for (const seed of [0, 1, -1, 0x7fff_ffff, -(2 ** 31)]) {
      const t = new RequestTable(index, seed, 2);
      ids.forEach((id, i) => {
        t.addHeld(id, 1000 + i, i + 1, 5000, index.at(0), 1);
      });
      ids.forEach((id, i) => {
        expect(t.recordAt(t.find(id)).holdId).toBe(i + 1);
      });
      expect(t.find("order-2")).toBe(-1);
      expect(t.find("")).toBe(-1);
    }
  });

  it("tells apart two ids whose hashes are equal", () => {
    // A 32-bit hash collides among a few 100,000 ids (birthday bound).
    const seed = 7;
    const byHash = new Map<number, string>();
    let pair: [string, string] | null = null;
    for (let i = 0; pair === null; i++) {
      const id = `id-${i}`;
      const h = requestHash(id, seed);
      const other = byHash.get(h);
      if (other !== undefined) pair = [other, id];
      else byHash.set(h, id);
    }
    const [a, b] = pair;
    expect(requestHash(a, seed)).toBe(requestHash(b, seed));
    const index = positions();
    const t = new RequestTable(index, seed, 2);
    t.addHeld(a, 1, 11, 100, index.at(0), 1);
    expect(t.find(b)).toBe(-1);
    t.addHeld(b, 2, 22, 100, index.at(1), 2);
    expect(t.recordAt(t.find(a)).holdId).toBe(11);
    expect(t.recordAt(t.find(b)).holdId).toBe(22);
    t.dropOldest();
    expect(t.find(a)).toBe(-1);
    expect(t.recordAt(t.find(b)).holdId).toBe(22);
  });

  it("keeps a sliding window of a million ids", () => {
    const index = positions();
    const t = new RequestTable(index, 12345);
    for (let i = 1; i <= 1_000_000; i++) {
      t.addHeld(`order-${i}`, i, i, i + 900_000, index.at(i % 4), 1);
      if (i > 50_000) t.dropOldest();
    }
    expect(t.size).toBe(50_000);
    expect(t.recordAt(t.find("order-950001")).holdId).toBe(950_001);
    expect(t.find("order-950000")).toBe(-1);
    expect(t.oldestTimeMs()).toBe(950_001);
  });

  it("refuses an empty id", () => {
    const index = positions();
    expect(() => new RequestTable(index, 0).addHeld("", 1, 1, 1, index.at(0), 1)).toThrow(
      /empty request id/,
    );
  });
});
