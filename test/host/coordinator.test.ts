import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode, type Line, partitionOf } from "../../src/engine/index.ts";
import type { GroupRecord } from "../../src/host/coordinator.ts";
import { Engine, type EngineOptions } from "../../src/host/index.ts";
import { Op } from "../../src/host/protocol.ts";
import { Store } from "../../src/persistence/index.ts";

// Reservations whose lines sit in several partitions: all or nothing, across
// crashes (presumed abort), and never half fulfilled and half expired.

const partitionCount = 8;
const dirs: string[] = [];
const engines: Engine[] = [];

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "stockd-coord-"));
  dirs.push(d);
  return d;
}

async function open(dataDir: string, extra: Partial<EngineOptions> = {}): Promise<Engine> {
  const e = await Engine.open({ dataDir, partitionCount, workerCount: 0, ...extra });
  engines.push(e);
  return e;
}

async function reopen(e: Engine, extra: Partial<EngineOptions> = {}): Promise<Engine> {
  engines.splice(engines.indexOf(e), 1);
  await e.close();
  return open(e.dataDir, extra);
}

/** Products in distinct partitions. */
function productsInDistinctPartitions(n: number): string[] {
  const seen = new Set<number>();
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    const p = partitionOf(`sku-${i}`, partitionCount);
    if (seen.has(p)) continue;
    seen.add(p);
    out.push(`sku-${i}`);
  }
  return out;
}

const products = productsInDistinctPartitions(3);
const w = "blr";

/** An injected clock for the start-up cases whose holds must be pinned
 * before their deadline and be past it at the restart: the test, not the
 * machine's load, decides when the deadline passes. Pulse by hand. */
function manualClock(): { options: Partial<EngineOptions>; advance(ms: number): void } {
  let nowMs = 1_763_900_000_000;
  return {
    options: { holdDurationMs: 60_000, now: () => nowMs, manualPulse: true },
    advance(ms) {
      nowMs += ms;
    },
  };
}

function lines(qty: number[]): Line[] {
  return qty.map((quantity, i) => ({ productId: products[i]!, warehouseId: w, quantity }));
}

async function stock(e: Engine, qty = 5): Promise<void> {
  for (const p of products) {
    const r = await e.receiveStock({ productId: p, warehouseId: w, quantity: qty });
    expect(r.ok).toBe(true);
  }
}

async function levels(e: Engine): Promise<[number, number, number][]> {
  const out: [number, number, number][] = [];
  for (const p of products) {
    const v = await e.position(p, w);
    out.push([v?.available ?? 0, v?.reserved ?? 0, v?.fulfilled ?? 0]);
  }
  return out;
}

/** Sends a command straight to the owning partition, around the coordinator:
 * it builds the journal states a crash mid-protocol leaves behind. */
function raw(e: Engine, op: Op, arg: unknown): Promise<{ ok: boolean; [k: string]: unknown }> {
  const route = (e as unknown as { route: (op: Op, arg: unknown) => Promise<unknown> }).route;
  return route.call(e, op, arg) as Promise<{ ok: boolean }>;
}

async function prepare(
  e: Engine,
  i: number,
  quantity: number,
  expireTimeMs: number,
): Promise<number> {
  const r = (await raw(e, Op.Prepare, {
    lines: [lines([0, 0, 0].map(() => quantity))[i]!],
    expireTimeMs,
  })) as {
    ok: boolean;
    reservation: { holdId: number };
  };
  expect(r.ok).toBe(true);
  return r.reservation.holdId;
}

describe.each([0, 2])("reservations spanning partitions (workers: %i)", (workerCount) => {
  it("holds every line or none, and names the failing line", async () => {
    const e = await open(tempDir(), { workerCount });
    await stock(e);
    const refused = await e.reserve({ lines: lines([2, 2, 6]) });
    expect(refused).toMatchObject({
      ok: false,
      code: ErrorCode.OutOfStock,
      lineIndex: 2,
      available: 5,
    });
    expect(await levels(e)).toEqual([
      [5, 0, 0],
      [5, 0, 0],
      [5, 0, 0],
    ]);
    const held = await e.reserve({ lines: lines([2, 3, 4]) });
    expect(held.ok).toBe(true);
    expect(await levels(e)).toEqual([
      [3, 2, 0],
      [2, 3, 0],
      [1, 4, 0],
    ]);
    if (!held.ok) return;
    const parts = await e.holdParts(held.reservation.holdId);
    expect(parts).toHaveLength(3);
    for (const p of parts)
      expect(p).toMatchObject({ status: "OPEN", prepared: false, pinned: false });
    await e.checkInvariants();
  });

  it("fulfils partially across partitions, once", async () => {
    const e = await open(tempDir(), { workerCount });
    await stock(e);
    const held = await e.reserve({ lines: lines([2, 3, 4]) });
    if (!held.ok) throw new Error(held.message);
    const id = held.reservation.holdId;
    expect(await e.fulfil({ holdId: id, quantities: [2, 1, 0] })).toEqual({
      ok: true,
      holdId: id,
      quantities: [2, 1, 0],
    });
    expect(await levels(e)).toEqual([
      [3, 0, 2],
      [4, 0, 1],
      [5, 0, 0],
    ]);
    expect(await e.fulfil({ holdId: id })).toMatchObject({
      ok: false,
      code: ErrorCode.HoldFulfilled,
    });
    expect(await e.release({ holdId: id })).toMatchObject({
      ok: false,
      code: ErrorCode.HoldFulfilled,
    });
    expect((await e.holdParts(id)).map((p) => p?.status)).toEqual([
      "FULFILLED",
      "FULFILLED",
      "FULFILLED",
    ]);
  });

  it("refuses bad fulfil quantities and changes nothing", async () => {
    const e = await open(tempDir(), { workerCount });
    await stock(e);
    const held = await e.reserve({ lines: lines([2, 3, 4]) });
    if (!held.ok) throw new Error(held.message);
    const before = await levels(e);
    for (const quantities of [
      [1, 1],
      [3, 0, 0],
      [1, 1, 1, 1],
    ]) {
      const r = await e.fulfil({ holdId: held.reservation.holdId, quantities });
      expect(r).toMatchObject({ ok: false, code: ErrorCode.InvalidArgument });
    }
    expect(await levels(e)).toEqual(before);
    for (const p of await e.holdParts(held.reservation.holdId))
      expect(p).toMatchObject({ pinned: false });
  });

  it("releases every part", async () => {
    const e = await open(tempDir(), { workerCount });
    await stock(e);
    const held = await e.reserve({ lines: lines([1, 1, 1]) });
    if (!held.ok) throw new Error(held.message);
    expect(await e.release({ holdId: held.reservation.holdId })).toEqual({
      ok: true,
      holdId: held.reservation.holdId,
    });
    expect(await levels(e)).toEqual([
      [5, 0, 0],
      [5, 0, 0],
      [5, 0, 0],
    ]);
  });

  it("never fulfils half: one part ended refuses the whole and unpins the rest", async () => {
    const e = await open(tempDir(), { workerCount });
    await stock(e);
    const held = await e.reserve({ lines: lines([1, 2, 3]) });
    if (!held.ok) throw new Error(held.message);
    const members = (await e.holdParts(held.reservation.holdId)).map((p) => p!.holdId);
    // One part ends behind the coordinator's back (as an expiry would).
    expect((await raw(e, Op.Release, { holdId: members[1] })).ok).toBe(true);
    const r = await e.fulfil({ holdId: held.reservation.holdId });
    expect(r).toMatchObject({ ok: false, code: ErrorCode.HoldReleased });
    const parts = await e.holdParts(held.reservation.holdId);
    expect(parts.map((p) => p?.status)).toEqual(["OPEN", "RELEASED", "OPEN"]);
    for (const p of parts) if (p?.status === "OPEN") expect(p.pinned).toBe(false);
    expect((await levels(e)).map((l) => l[2])).toEqual([0, 0, 0]);
    await e.checkInvariants();
  });

  it("expires every part at the deadline; a late fulfil is refused", async () => {
    const e = await open(tempDir(), { workerCount, wheelTickMs: 5 });
    await stock(e);
    const held = await e.reserve({ lines: lines([1, 1, 1]), holdDurationMs: 30 });
    if (!held.ok) throw new Error(held.message);
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      const parts = await e.holdParts(held.reservation.holdId);
      if (parts.every((p) => p?.status === "EXPIRED")) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect((await e.holdParts(held.reservation.holdId)).map((p) => p?.status)).toEqual([
      "EXPIRED",
      "EXPIRED",
      "EXPIRED",
    ]);
    expect(await e.fulfil({ holdId: held.reservation.holdId })).toMatchObject({
      ok: false,
      code: ErrorCode.HoldExpired,
    });
    expect(await levels(e)).toEqual([
      [5, 0, 0],
      [5, 0, 0],
      [5, 0, 0],
    ]);
  });

  it("answers a repeated request id with the first answer, also after a restart", async () => {
    let e = await open(tempDir(), { workerCount });
    await stock(e);
    const first = await e.reserve({ lines: lines([1, 1, 1]), requestId: "cart-42" });
    if (!first.ok) throw new Error(first.message);
    const again = await e.reserve({ lines: lines([1, 1, 1]), requestId: "cart-42" });
    expect(again).toMatchObject({
      ok: true,
      reservation: { holdId: first.reservation.holdId, replayed: true },
    });
    expect(await e.reserve({ lines: lines([1, 1, 2]), requestId: "cart-42" })).toMatchObject({
      ok: false,
      code: ErrorCode.RequestIdReused,
    });
    const refused = await e.reserve({ lines: lines([1, 1, 9]), requestId: "cart-43" });
    expect(refused).toMatchObject({ ok: false, code: ErrorCode.OutOfStock, lineIndex: 2 });
    e = await reopen(e, { workerCount });
    expect(await e.reserve({ lines: lines([1, 1, 1]), requestId: "cart-42" })).toMatchObject({
      ok: true,
      reservation: { holdId: first.reservation.holdId, replayed: true },
    });
    await e.receiveStock({ productId: products[2]!, warehouseId: w, quantity: 10 });
    expect(await e.reserve({ lines: lines([1, 1, 9]), requestId: "cart-43" })).toMatchObject({
      ok: false,
      code: ErrorCode.OutOfStock,
      lineIndex: 2,
    });
    expect(await levels(e)).toEqual([
      [4, 1, 0],
      [4, 1, 0],
      [14, 1, 0],
    ]);
  });
});

describe("start-up after a crash mid-protocol", () => {
  it("releases prepared holds with no durable decision (presumed abort)", async () => {
    let e = await open(tempDir());
    await stock(e);
    const deadline = Date.now() + 60_000;
    const a = await prepare(e, 0, 2, deadline);
    const b = await prepare(e, 1, 3, deadline);
    expect(await levels(e)).toEqual([
      [3, 2, 0],
      [2, 3, 0],
      [5, 0, 0],
    ]);
    e = await reopen(e);
    expect(e.reconciled).toMatchObject({ aborted: 2, confirmed: 0 });
    expect(await e.hold(a)).toMatchObject({ status: "ABORTED" });
    expect(await e.hold(b)).toMatchObject({ status: "ABORTED" });
    expect(await levels(e)).toEqual([
      [5, 0, 0],
      [5, 0, 0],
      [5, 0, 0],
    ]);
    await e.checkInvariants();
  });

  it("confirms prepared holds whose decision was durable", async () => {
    let e = await open(tempDir());
    await stock(e);
    const now = Date.now();
    const expireTimeMs = now + 60_000;
    const a = await prepare(e, 0, 2, expireTimeMs);
    const b = await prepare(e, 1, 3, expireTimeMs);
    const group: GroupRecord = {
      groupId: a,
      requestId: "",
      timeMs: now,
      expireTimeMs,
      lines: lines([2, 3]),
      members: [
        { holdId: a, partition: a % 1024, lineIndexes: [0] },
        { holdId: b, partition: b % 1024, lineIndexes: [1] },
      ],
      settlement: null,
    };
    const store = Store.open(e.dataDir);
    await store.putCoordinatorRecords([[`g:${a}`, group]]);
    await store.close();
    e = await reopen(e);
    expect(e.reconciled).toMatchObject({ aborted: 0, confirmed: 2 });
    expect(await e.hold(a)).toMatchObject({
      status: "OPEN",
      prepared: false,
      lines: lines([2, 3]),
    });
    expect((await e.holdParts(a)).map((p) => p?.status)).toEqual(["OPEN", "OPEN"]);
    expect(await e.fulfil({ holdId: a })).toMatchObject({ ok: true, quantities: [2, 3] });
    expect(await levels(e)).toEqual([
      [3, 0, 2],
      [2, 0, 3],
      [5, 0, 0],
    ]);
  });

  it("completes a durable fulfil decision on pinned parts, even past the deadline", async () => {
    const clock = manualClock();
    let e = await open(tempDir(), clock.options);
    await stock(e);
    const held = await e.reserve({ lines: lines([1, 2, 3]) });
    if (!held.ok) throw new Error(held.message);
    const members = (await e.holdParts(held.reservation.holdId)).map((p) => p!.holdId);
    for (const m of members) expect((await raw(e, Op.Pin, { holdId: m })).ok).toBe(true);
    const store = Store.open(e.dataDir);
    const record = [...store.coordinatorRecords("g:")][0]!.value as GroupRecord;
    record.settlement = { kind: "FULFIL", quantities: [1, 2, 3] };
    await store.putCoordinatorRecords([[`g:${record.groupId}`, record]]);
    await store.close();
    clock.advance(120_000); // the deadline passes while "down"
    e = await reopen(e, clock.options);
    expect(e.reconciled).toMatchObject({ settled: 3, unpinned: 0 });
    expect((await e.holdParts(held.reservation.holdId)).map((p) => p?.status)).toEqual([
      "FULFILLED",
      "FULFILLED",
      "FULFILLED",
    ]);
    expect(await levels(e)).toEqual([
      [4, 0, 1],
      [3, 0, 2],
      [2, 0, 3],
    ]);
  });

  it("unpins parts pinned without a decision; past their deadline they expire", async () => {
    const clock = manualClock();
    let e = await open(tempDir(), clock.options);
    await stock(e);
    const held = await e.reserve({ lines: lines([1, 1, 1]) });
    if (!held.ok) throw new Error(held.message);
    const members = (await e.holdParts(held.reservation.holdId)).map((p) => p!.holdId);
    for (const m of members) expect((await raw(e, Op.Pin, { holdId: m })).ok).toBe(true);
    clock.advance(120_000);
    e = await reopen(e, clock.options);
    expect(e.reconciled).toMatchObject({ unpinned: 3, settled: 0 });
    e.pulse();
    expect((await e.holdParts(held.reservation.holdId)).map((p) => p?.status)).toEqual([
      "EXPIRED",
      "EXPIRED",
      "EXPIRED",
    ]);
    expect(await levels(e)).toEqual([
      [5, 0, 0],
      [5, 0, 0],
      [5, 0, 0],
    ]);
  });
});

describe("a decision whose write fails", () => {
  /** The coordinator's records go through a replica that stores them here
   * and then fails (the answer lost: "stored"), or fails without storing
   * ("lost"), once `failing` is set. */
  async function withReplica(dataDir: string, outcome: "stored" | "lost") {
    const state = { failing: false, broken: [] as string[] };
    const e = await open(dataDir, {
      workerCount: 2,
      onBroken: (why) => state.broken.push(why),
      coordinatorReplica: (store) => ({
        replicateCoordinator: async (writes) => {
          if (!state.failing || outcome === "stored") await store.writeCoordinator(writes, false);
          if (state.failing) throw new Error("the replica's answer was lost");
        },
      }),
    });
    return { e, state };
  }

  it.each(["stored", "lost"] as const)(
    "stops the engine without undoing; restart decides by what is durable (%s)",
    async (outcome) => {
      let { e, state } = await withReplica(tempDir(), outcome);
      await stock(e);
      state.failing = true;
      const r = await e.reserve({ lines: lines([2, 2, 2]) });
      expect(r).toMatchObject({ ok: false, code: ErrorCode.Unavailable });
      expect(r.ok ? "" : r.message).toMatch(/outcome is decided at recovery/);
      expect(state.broken).toEqual([expect.stringMatching(/coordinator journal failed/)]);
      // Nothing more is acknowledged by this engine.
      expect(await e.reserve({ lines: lines([1]) })).toMatchObject({
        ok: false,
        code: ErrorCode.Unavailable,
      });
      e = await reopen(e);
      // All or nothing, by what the journal holds: the decision stored means
      // every part held; lost means every part released (presumed abort).
      expect(e.reconciled).toMatchObject(
        outcome === "stored" ? { confirmed: 3, aborted: 0 } : { confirmed: 0, aborted: 3 },
      );
      const held = outcome === "stored" ? 2 : 0;
      expect(await levels(e)).toEqual(products.map(() => [5 - held, held, 0]));
    },
  );

  it("a failed fulfil decision is completed or undone at restart, never half", async () => {
    let { e, state } = await withReplica(tempDir(), "stored");
    await stock(e);
    const held = await e.reserve({ lines: lines([1, 2, 3]) });
    if (!held.ok) throw new Error(held.message);
    state.failing = true;
    const f = await e.fulfil({ holdId: held.reservation.holdId });
    expect(f).toMatchObject({ ok: false, code: ErrorCode.Unavailable });
    expect(state.broken).toHaveLength(1);
    e = await reopen(e);
    // The settlement was stored: restart finishes it on every pinned part.
    expect(e.reconciled).toMatchObject({ settled: 3 });
    expect(await levels(e)).toEqual([
      [4, 0, 1],
      [3, 0, 2],
      [2, 0, 3],
    ]);
  });
});
