import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SeqTable } from "../../src/engine/seq_table.ts";

describe("SeqTable", () => {
  it("behaves as a Map under any sequence of set and delete", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            del: fc.boolean(),
            // Small keys collide often; large ones exercise the low-bit hash.
            key: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 2 ** 43 })),
            value: fc.integer({ min: 0, max: 2 ** 50 }),
          }),
          { maxLength: 400 },
        ),
        (ops) => {
          const t = new SeqTable(4);
          const m = new Map<number, number>();
          for (const o of ops) {
            if (o.del) expect(t.delete(o.key)).toBe(m.delete(o.key));
            else {
              t.set(o.key, o.value);
              m.set(o.key, o.value);
            }
            expect(t.size).toBe(m.size);
          }
          for (const [k, v] of m) expect(t.get(k)).toBe(v);
          for (const o of ops) if (!m.has(o.key)) expect(t.get(o.key)).toBeUndefined();
        },
      ),
      { numRuns: 300 },
    );
  });

  it("keeps a sliding window of sequential keys", () => {
    const t = new SeqTable();
    for (let seq = 1; seq <= 100_000; seq++) {
      t.set(seq, seq * 8 + 1);
      if (seq > 1000) expect(t.delete(seq - 1000)).toBe(true);
    }
    expect(t.size).toBe(1000);
    expect(t.get(99_001)).toBe(99_001 * 8 + 1);
    expect(t.get(99_000)).toBeUndefined();
  });

  it("refuses key 0, which marks an empty slot", () => {
    expect(() => new SeqTable().set(0, 1)).toThrow();
  });
});
