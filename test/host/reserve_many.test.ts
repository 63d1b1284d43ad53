import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode, partitionOf, type ReserveStock } from "../../src/engine/index.ts";
import { Engine, type EngineOptions } from "../../src/host/index.ts";

// Engine.reserveMany (the batch call): every reservation answered on its own,
// in order, exactly as reserve() would answer it, with one promise for all.

const partitionCount = 8;
const dirs: string[] = [];
const engines: Engine[] = [];

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function open(extra: Partial<EngineOptions> = {}): Promise<Engine> {
  const dataDir = mkdtempSync(join(tmpdir(), "stockd-many-"));
  dirs.push(dataDir);
  const e = await Engine.open({ dataDir, partitionCount, ...extra });
  engines.push(e);
  return e;
}

/** Products in distinct partitions. */
function distinct(n: number): string[] {
  const seen = new Set<number>();
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    const p = partitionOf(`sku-${i}`, partitionCount);
    if (!seen.has(p)) {
      seen.add(p);
      out.push(`sku-${i}`);
    }
  }
  return out;
}

const [A, B, C] = distinct(3) as [string, string, string];
const w = "blr";

function one(productId: string, quantity: number, requestId?: string): ReserveStock {
  const cmd: ReserveStock = { lines: [{ productId, warehouseId: w, quantity }] };
  if (requestId !== undefined) cmd.requestId = requestId;
  return cmd;
}

describe.each([0, 2])("Engine.reserveMany (%i workers)", (workerCount) => {
  it("answers each reservation in order, as reserve() would", async () => {
    const e = await open({ workerCount });
    for (const p of [A, B, C]) {
      expect((await e.receiveStock({ productId: p, warehouseId: w, quantity: 5 })).ok).toBe(true);
    }
    const batch: ReserveStock[] = [
      one(A, 2),
      one(B, 0), // invalid
      one(C, 6), // out of stock
      one(A, 3, "k1"),
      one(A, 1), // A is now empty
      // Lines in two partitions: the coordinator's way, all or nothing.
      { lines: [one(B, 1).lines[0]!, one(C, 1).lines[0]!] },
      { lines: [one(B, 1).lines[0]!, one(C, 9).lines[0]!] },
      one(A, 3, "k1"), // the same request id: its first answer
      one("", 1), // invalid id
    ];
    const r = await e.reserveMany(batch);
    expect(r.map((x) => (x.ok ? "ok" : x.code))).toEqual([
      "ok",
      ErrorCode.InvalidArgument,
      ErrorCode.OutOfStock,
      "ok",
      ErrorCode.OutOfStock,
      "ok",
      ErrorCode.OutOfStock,
      "ok",
      ErrorCode.InvalidArgument,
    ]);
    const first = r[3]!;
    const again = r[7]!;
    if (!first.ok || !again.ok) throw new Error("unreachable");
    expect(again.reservation.holdId).toBe(first.reservation.holdId);
    expect(again.reservation.replayed).toBe(true);
    expect(await e.position(A, w)).toMatchObject({ available: 0, reserved: 5 });
    expect(await e.position(B, w)).toMatchObject({ available: 4, reserved: 1 });
    expect(await e.position(C, w)).toMatchObject({ available: 4, reserved: 1 });
    // Each hold is a real hold: released one by one.
    for (const x of [r[0]!, r[3]!, r[5]!]) {
      if (!x.ok) throw new Error("unreachable");
      expect((await e.release({ holdId: x.reservation.holdId })).ok).toBe(true);
    }
    expect(await e.position(A, w)).toMatchObject({ available: 5, reserved: 0 });
    expect(await e.position(B, w)).toMatchObject({ available: 5, reserved: 0 });
  });

  it("answers an empty batch with nothing, and a full queue with OVERLOADED for the rest", async () => {
    expect(await (await open({ workerCount })).reserveMany([])).toEqual([]);
    const e = await open({ workerCount, queueCountMax: 3 });
    expect((await e.receiveStock({ productId: A, warehouseId: w, quantity: 100 })).ok).toBe(true);
    const r = await e.reserveMany(Array.from({ length: 5 }, () => one(A, 1)));
    expect(r.map((x) => (x.ok ? "ok" : x.code))).toEqual([
      "ok",
      "ok",
      "ok",
      ErrorCode.Overloaded,
      ErrorCode.Overloaded,
    ]);
    expect(await e.position(A, w)).toMatchObject({ available: 97, reserved: 3 });
  });

  it("answers UNAVAILABLE for every reservation once the engine is closed", async () => {
    const e = await open({ workerCount });
    engines.splice(engines.indexOf(e), 1);
    await e.close();
    const r = await e.reserveMany([one(A, 1), one(B, 1)]);
    expect(r.map((x) => (x.ok ? "ok" : x.code))).toEqual([
      ErrorCode.Unavailable,
      ErrorCode.Unavailable,
    ]);
  });
});
