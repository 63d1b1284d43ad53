import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDataDir, cli, type Fixture, lines, removeDir, tempDir } from "./support.ts";

// `stockd journal dump` and `stockd replay` against a data directory written
// by the engine; the expected values come from the engine itself.

let root: string;
let fx: Fixture;

beforeAll(async () => {
  root = tempDir();
  fx = await buildDataDir(`${root}/data`, Date.parse("2020-03-01T10:00:00.000Z"));
});

afterAll(() => removeDir(root));

interface DumpedEvent {
  partition: number;
  seq: number;
  timeMs: number;
  time: string;
  type: string;
  [field: string]: unknown;
}

async function dumpJson(...args: string[]): Promise<DumpedEvent[]> {
  const r = await cli(["journal", "dump", "--data", fx.dir, "--json", ...args]);
  expect(r.code, r.stderr).toBe(0);
  return lines(r.stdout).map((l) => JSON.parse(l) as DumpedEvent);
}

const iso = (ms: number) => new Date(ms).toISOString();

describe("journal dump", () => {
  it("prints one line per event, in partition then seq order", async () => {
    const r = await cli(["journal", "dump", "--data", fx.dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const out = lines(r.stdout);
    expect(out).toHaveLength(14);
    for (const l of out) expect(l).toMatch(/^p=\d seq=\d+ \d{4}-\d\d-\d\dT[\d:.]+Z [A-Z_]+ /);
    const t = (minutes: number) => iso(fx.t0Ms + minutes * 60_000);
    expect(out[0]).toBe(`p=0 seq=1 ${t(0)} STOCK_RECEIVED position=${fx.a}@blr quantity=10`);
    expect(out).toContain(
      `p=0 seq=3 ${t(1)} STOCK_RESERVED hold=${fx.holdA1} expires=${t(121)} lines=${fx.a}@blr x2 request=r-a1`,
    );
    expect(out).toContain(
      `p=0 seq=4 ${t(2)} STOCK_RESERVED hold=${fx.holdA2} expires=${iso(fx.t0Ms + 2 * 60_000 + 1000)} ` +
        `lines=${fx.a}@blr x1,${fx.a}@del x1 request=r-a2`,
    );
    expect(out).toContain(`p=0 seq=5 ${t(3)} HOLD_RELEASED hold=${fx.holdA2} reason=EXPIRED`);
    expect(out).toContain(`p=1 seq=3 ${t(4)} HOLD_FULFILLED hold=${fx.holdB} quantities=2`);
    expect(out).toContain(
      `p=2 seq=2 ${t(5)} RESERVATION_REFUSED request=r-c-big line=0 available=7`,
    );
    expect(out).toContain(
      `p=2 seq=3 ${t(6)} STOCK_ADJUSTED position=${fx.c}@blr delta=-1 reason=DAMAGE`,
    );
    expect(out.filter((l) => l.includes("reason=RELEASED"))).toHaveLength(1);
  });

  it("--json prints every field of every event, enums by name", async () => {
    const events = await dumpJson();
    expect(events).toHaveLength(14);
    const keys = events.map((e) => [e.partition, e.seq]);
    expect(keys).toEqual([...keys].sort((x, y) => x[0]! - y[0]! || x[1]! - y[1]!));
    for (const [p, n] of fx.eventCounts.entries()) {
      expect(events.filter((e) => e.partition === p).map((e) => e.seq)).toEqual(
        Array.from({ length: n }, (_, i) => i + 1),
      );
    }
    const byType: Record<string, number> = {};
    for (const e of events) byType[e.type] = (byType[e.type] ?? 0) + 1;
    expect(byType).toEqual({
      STOCK_RECEIVED: 4,
      STOCK_RESERVED: 5,
      RESERVATION_REFUSED: 1,
      STOCK_ADJUSTED: 1,
      HOLD_RELEASED: 2,
      HOLD_FULFILLED: 1,
    });
    const reserved = events.find((e) => e.type === "STOCK_RESERVED" && e.holdId === fx.holdA1);
    expect(reserved).toMatchObject({
      partition: 0,
      seq: 3,
      timeMs: fx.t0Ms + 60_000,
      time: iso(fx.t0Ms + 60_000),
      requestId: "r-a1",
      expireTime: iso(reserved!.expireTimeMs as number),
      lines: [{ productId: fx.a, warehouseId: "blr", quantity: 2 }],
    });
    expect(events.filter((e) => e.type === "HOLD_RELEASED").map((e) => e.reason)).toEqual([
      "EXPIRED",
      "RELEASED",
    ]);
    expect(events.find((e) => e.type === "STOCK_ADJUSTED")).toMatchObject({
      delta: -1,
      reason: "DAMAGE",
    });
  });

  it("--partition and --from narrow the listing", async () => {
    const events = await dumpJson("--partition", "0", "--from", "3");
    expect(events.map((e) => [e.partition, e.seq])).toEqual([
      [0, 3],
      [0, 4],
      [0, 5],
    ]);
    expect(await dumpJson("--partition", "3")).toEqual([]);
  });
});

interface Replayed {
  until: number | string | null;
  partitions: {
    partition: number;
    seq: number;
    timeMs: number;
    positions: {
      productId: string;
      warehouseId: string;
      available: number;
      reserved: number;
      received: number;
      adjusted: number;
      fulfilled: number;
      holds: {
        holdId: number;
        expireTimeMs: number;
        expireTime: string;
        requestId: string;
        quantity: number;
      }[];
    }[];
  }[];
}

async function replay(...args: string[]): Promise<Replayed> {
  const r = await cli(["replay", "--data", fx.dir, ...args]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toBe("");
  return JSON.parse(r.stdout) as Replayed;
}

function position(state: Replayed, key: string) {
  const all = state.partitions.flatMap((p) => p.positions);
  return all.find((x) => `${x.productId}@${x.warehouseId}` === key);
}

describe("replay", () => {
  it("rebuilds a product's positions as the engine had them", async () => {
    const state = await replay("--product", fx.a);
    expect(state.until).toBeNull();
    expect(state.partitions.map((p) => [p.partition, p.seq])).toEqual([[0, 5]]);
    for (const key of [`${fx.a}@blr`, `${fx.a}@del`]) {
      const { holds, ...numbers } = position(state, key)!;
      expect(numbers).toEqual(fx.positions.get(key));
    }
    const blr = position(state, `${fx.a}@blr`)!;
    expect(blr.reserved).toBe(2);
    expect(blr.holds).toEqual([
      {
        holdId: fx.holdA1,
        expireTimeMs: blr.holds[0]!.expireTimeMs,
        expireTime: iso(fx.t0Ms + 121 * 60_000),
        requestId: "r-a1",
        quantity: 2,
        prepared: false,
        pinned: false,
      },
    ]);
    expect(position(state, `${fx.a}@del`)!.holds).toEqual([]);
  });

  it("replays every partition, and --warehouse filters positions", async () => {
    const all = await replay();
    expect(all.partitions.map((p) => p.seq)).toEqual(fx.eventCounts);
    for (const [key, view] of fx.positions) {
      const { holds, ...numbers } = position(all, key)!;
      expect(numbers).toEqual(view);
    }
    const del = await replay("--warehouse", "del");
    expect(
      del.partitions.flatMap((p) => p.positions.map((x) => `${x.productId}@${x.warehouseId}`)),
    ).toEqual([`${fx.a}@del`]);
  });

  it("--until SEQ shows the state before a reservation", async () => {
    const events = await dumpJson("--partition", "0");
    const firstHold = events.find((e) => e.type === "STOCK_RESERVED")!;
    const state = await replay("--product", fx.a, "--until", String(firstHold.seq - 1));
    expect(state.until).toBe(firstHold.seq - 1);
    expect(state.partitions[0]!.seq).toBe(firstHold.seq - 1);
    expect(position(state, `${fx.a}@blr`)).toMatchObject({ available: 10, reserved: 0, holds: [] });
  });

  it("--until TIME shows every partition as it was then", async () => {
    const until = new Date(fx.t0Ms + 30_000).toISOString();
    const state = await replay("--until", until);
    expect(state.until).toBe(until);
    expect(state.partitions.map((p) => p.seq)).toEqual([2, 1, 1, 0]);
    expect(position(state, `${fx.a}@blr`)).toMatchObject({ available: 10, reserved: 0 });
    expect(position(state, `${fx.c}@blr`)).toMatchObject({ available: 7, adjusted: 0 });
    // Inclusive: an event exactly at the time given is in.
    const atHold = await replay("--product", fx.a, "--until", iso(fx.t0Ms + 60_000));
    expect(position(atHold, `${fx.a}@blr`)).toMatchObject({ available: 8, reserved: 2 });
  });

  it("refuses a product outside the partition asked for", async () => {
    const r = await cli(["replay", "--data", fx.dir, "--product", fx.a, "--partition", "1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`product ${fx.a} is in partition 0, not 1`);
  });
});
