import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AdjustStock,
  digestPartition,
  ErrorCode,
  type FulfilHold,
  holdIdOf,
  limits,
  Partition,
  partitionOf,
  type ReceiveStock,
  type ReleaseHold,
  type ReserveStock,
} from "../../src/engine/index.ts";
import { Engine } from "../../src/host/index.ts";

// Every malformed command gets INVALID_ARGUMENT with a message naming what is
// wrong, and changes nothing: no event, the same digest. Checked on a
// partition directly and through the engine (real LMDB in a temp dir).

const partitionCount = 4;
const pid = 2;
const T0 = 1_700_000_000_000;

function productsIn(partition: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const id = `item-${i}`;
    if (partitionOf(id, partitionCount) === partition) out.push(id);
  }
  return out;
}

const [P, Q] = productsIn(pid, 2) as [string, string];
const [OTHER] = productsIn(pid + 1, 1) as [string];
const W = "wh-1";

type Op = "receive" | "adjust" | "reserve" | "release" | "fulfil";

interface Ctx {
  /** An open hold of two lines: P@W x 2, Q@W x 1. */
  holdId: number;
}

interface Case {
  name: string;
  op: Op;
  cmd: (ctx: Ctx) => unknown;
  /** What the message must say. */
  message: RegExp;
  /** Where the engine's message differs (it validates before routing). */
  engineMessage?: RegExp;
}

const badQuantities: [string, unknown, RegExp][] = [
  ["0", 0, /must be at least 1/],
  ["negative", -3, /must be at least 1/],
  ["-0", -0, /must be at least 1/],
  ["fractional", 1.5, /must be an integer/],
  ["NaN", Number.NaN, /must be an integer/],
  ["Infinity", Number.POSITIVE_INFINITY, /must be an integer/],
  ["-Infinity", Number.NEGATIVE_INFINITY, /must be an integer/],
  ["quantityMax + 1", limits.quantityMax + 1, new RegExp(`at most ${limits.quantityMax}`)],
  ["2**53", 2 ** 53, new RegExp(`at most ${limits.quantityMax}`)],
  ["a string", "5", /must be an integer/],
  ["null", null, /must be an integer/],
  ["missing", undefined, /must be an integer/],
];

const badIds: [string, unknown, RegExp][] = [
  ["empty", "", /must not be empty/],
  ["a number", 42, /must be a string/],
  ["null", null, /must be a string/],
  ["missing", undefined, /must be a string/],
  ["an object", { id: "x" }, /must be a string/],
  ["too long", "x".repeat(limits.idLengthMax + 1), new RegExp(`longer than ${limits.idLengthMax}`)],
  ["with a space", "a b", /printable ASCII without spaces/],
  ["a lone space", " ", /printable ASCII without spaces/],
  ["with a tab", "a\tb", /printable ASCII without spaces/],
  ["with a newline", "a\n", /printable ASCII without spaces/],
  ["with NUL", "a\u0000b", /printable ASCII without spaces/],
  ["with DEL", "a\u007f", /printable ASCII without spaces/],
  ["not ASCII", "caf\u00e9", /printable ASCII without spaces/],
];

const badHoldIds: [string, unknown][] = [
  ["negative", -2048],
  ["zero", 0],
  ["below 1024", 1023],
  ["fractional", 2048.5],
  ["a string", "2048"],
  ["NaN", Number.NaN],
  ["Infinity", Number.POSITIVE_INFINITY],
  ["unsafe", 2 ** 53 + 2],
  ["null", null],
  ["missing", undefined],
];

function line(productId: unknown, warehouseId: unknown, quantity: unknown) {
  return { productId, warehouseId, quantity };
}

function buildCases(): Case[] {
  const cases: Case[] = [];
  for (const [name, q, message] of badQuantities) {
    cases.push({
      name: `receive: quantity ${name}`,
      op: "receive",
      cmd: () => ({ productId: P, warehouseId: W, quantity: q }),
      message: new RegExp(`quantity .*${message.source}`),
    });
    cases.push({
      name: `reserve: quantity ${name}`,
      op: "reserve",
      cmd: () => ({ lines: [line(P, W, q)] }),
      message: new RegExp(`lines\\[0\\]: quantity .*${message.source}`),
    });
    cases.push({
      name: `reserve: second line quantity ${name}`,
      op: "reserve",
      cmd: () => ({ lines: [line(P, W, 1), line(Q, W, q)] }),
      message: new RegExp(`lines\\[1\\]: quantity .*${message.source}`),
    });
  }
  for (const [name, id, message] of badIds) {
    for (const field of ["productId", "warehouseId"] as const) {
      const cmd = { productId: P, warehouseId: W, [field]: id };
      const fieldMessage = new RegExp(`${field} .*${message.source}`);
      cases.push({
        name: `receive: ${field} ${name}`,
        op: "receive",
        cmd: () => ({ ...cmd, quantity: 1 }),
        message: fieldMessage,
      });
      cases.push({
        name: `adjust: ${field} ${name}`,
        op: "adjust",
        cmd: () => ({ ...cmd, delta: 1, reason: 1 }),
        message: fieldMessage,
      });
      cases.push({
        name: `reserve: ${field} ${name}`,
        op: "reserve",
        cmd: () => ({ lines: [{ ...cmd, quantity: 1 }] }),
        message: new RegExp(`lines\\[0\\]: ${field} .*${message.source}`),
      });
    }
  }
  // Adjust: delta and reason.
  const adjust = (extra: object) => () => ({
    productId: P,
    warehouseId: W,
    delta: 1,
    reason: 1,
    ...extra,
  });
  cases.push(
    {
      name: "adjust: delta 0",
      op: "adjust",
      cmd: adjust({ delta: 0 }),
      message: /delta must not be zero/,
    },
    {
      name: "adjust: delta -0",
      op: "adjust",
      cmd: adjust({ delta: -0 }),
      message: /delta must not be zero/,
    },
    {
      name: "adjust: delta fractional",
      op: "adjust",
      cmd: adjust({ delta: -0.5 }),
      message: /delta must be an integer/,
    },
    {
      name: "adjust: delta NaN",
      op: "adjust",
      cmd: adjust({ delta: Number.NaN }),
      message: /delta must be an integer/,
    },
    {
      name: "adjust: delta a string",
      op: "adjust",
      cmd: adjust({ delta: "3" }),
      message: /delta must be an integer/,
    },
    {
      name: "adjust: delta missing",
      op: "adjust",
      cmd: adjust({ delta: undefined }),
      message: /delta must be an integer/,
    },
    {
      name: "adjust: delta above max",
      op: "adjust",
      cmd: adjust({ delta: limits.quantityMax + 1 }),
      message: /delta must be within/,
    },
    {
      name: "adjust: delta below -max",
      op: "adjust",
      cmd: adjust({ delta: -limits.quantityMax - 1 }),
      message: /delta must be within/,
    },
    {
      name: "adjust: reason 0",
      op: "adjust",
      cmd: adjust({ reason: 0 }),
      message: /reason must be a known adjustment reason/,
    },
    {
      name: "adjust: reason 99",
      op: "adjust",
      cmd: adjust({ reason: 99 }),
      message: /reason must be a known adjustment reason/,
    },
    {
      name: "adjust: reason 6",
      op: "adjust",
      cmd: adjust({ reason: 6 }),
      message: /reason must be a known adjustment reason/,
    },
    {
      name: "adjust: reason fractional",
      op: "adjust",
      cmd: adjust({ reason: 1.5 }),
      message: /reason must be a known adjustment reason/,
    },
    {
      name: "adjust: reason a string",
      op: "adjust",
      cmd: adjust({ reason: "1" }),
      message: /reason must be a known adjustment reason/,
    },
    {
      name: "adjust: reason by name",
      op: "adjust",
      cmd: adjust({ reason: "DAMAGE" }),
      message: /reason must be a known adjustment reason/,
    },
    {
      name: "adjust: reason missing",
      op: "adjust",
      cmd: adjust({ reason: undefined }),
      message: /reason must be a known adjustment reason/,
    },
  );
  // Reserve: the lines themselves.
  const manyLines = Array.from({ length: limits.lineCountMax + 1 }, (_, i) => line(P, `w${i}`, 1));
  cases.push(
    {
      name: "reserve: lines empty",
      op: "reserve",
      cmd: () => ({ lines: [] }),
      message: /lines must not be empty/,
    },
    {
      name: "reserve: lines missing",
      op: "reserve",
      cmd: () => ({}),
      message: /lines must not be empty/,
    },
    {
      name: "reserve: lines null",
      op: "reserve",
      cmd: () => ({ lines: null }),
      message: /lines must not be empty/,
    },
    {
      name: "reserve: lines a string",
      op: "reserve",
      cmd: () => ({ lines: "P x 1" }),
      message: /lines must not be empty/,
    },
    {
      name: "reserve: lines an object",
      op: "reserve",
      cmd: () => ({ lines: { 0: line(P, W, 1), length: 1 } }),
      message: /lines must not be empty/,
    },
    {
      name: "reserve: too many lines",
      op: "reserve",
      cmd: () => ({ lines: manyLines }),
      message: new RegExp(`at most ${limits.lineCountMax} lines`),
    },
    {
      name: "reserve: a line null",
      op: "reserve",
      cmd: () => ({ lines: [line(P, W, 1), null] }),
      message: /lines\[1\] must be an object/,
    },
    {
      name: "reserve: a line a number",
      op: "reserve",
      cmd: () => ({ lines: [5] }),
      message: /lines\[0\] must be an object/,
    },
    {
      name: "reserve: duplicate product and warehouse",
      op: "reserve",
      cmd: () => ({ lines: [line(P, W, 1), line(Q, W, 1), line(P, W, 2)] }),
      message: /lines\[2\] repeats a product and warehouse/,
    },
  );
  const reserve = (extra: object) => () => ({ lines: [line(P, W, 1)], ...extra });
  const durationMessage = /holdDurationMs must be an integer from 1 to/;
  cases.push(
    {
      name: "reserve: requestId empty",
      op: "reserve",
      cmd: reserve({ requestId: "" }),
      message: /requestId must not be empty/,
    },
    {
      name: "reserve: requestId a number",
      op: "reserve",
      cmd: reserve({ requestId: 7 }),
      message: /requestId must be a string/,
    },
    {
      name: "reserve: requestId with a space",
      op: "reserve",
      cmd: reserve({ requestId: "order 1" }),
      message: /requestId must be printable ASCII/,
    },
    {
      name: "reserve: requestId too long",
      op: "reserve",
      cmd: reserve({ requestId: "r".repeat(limits.idLengthMax + 1) }),
      message: /requestId is longer than/,
    },
    {
      name: "reserve: holdDurationMs 0",
      op: "reserve",
      cmd: reserve({ holdDurationMs: 0 }),
      message: durationMessage,
    },
    {
      name: "reserve: holdDurationMs negative",
      op: "reserve",
      cmd: reserve({ holdDurationMs: -1_000 }),
      message: durationMessage,
    },
    {
      name: "reserve: holdDurationMs above max",
      op: "reserve",
      cmd: reserve({ holdDurationMs: limits.holdDurationMsMax + 1 }),
      message: durationMessage,
    },
    {
      name: "reserve: holdDurationMs fractional",
      op: "reserve",
      cmd: reserve({ holdDurationMs: 1.5 }),
      message: durationMessage,
    },
    {
      name: "reserve: holdDurationMs NaN",
      op: "reserve",
      cmd: reserve({ holdDurationMs: Number.NaN }),
      message: durationMessage,
    },
    {
      name: "reserve: holdDurationMs a string",
      op: "reserve",
      cmd: reserve({ holdDurationMs: "60000" }),
      message: durationMessage,
    },
  );
  // Release and fulfil: hold ids and quantities.
  for (const [name, holdId] of badHoldIds) {
    cases.push({
      name: `release: holdId ${name}`,
      op: "release",
      cmd: () => ({ holdId }),
      message: /holdId must be a hold id/,
    });
    cases.push({
      name: `fulfil: holdId ${name}`,
      op: "fulfil",
      cmd: () => ({ holdId }),
      message: /holdId must be a hold id/,
    });
  }
  const fulfil = (quantities: unknown) => (ctx: Ctx) => ({ holdId: ctx.holdId, quantities });
  cases.push(
    {
      name: "fulfil: quantities not an array",
      op: "fulfil",
      cmd: fulfil("2,1"),
      message: /quantities must be an array/,
    },
    {
      name: "fulfil: quantities null",
      op: "fulfil",
      cmd: fulfil(null),
      message: /quantities must be an array/,
    },
    {
      name: "fulfil: quantity negative",
      op: "fulfil",
      cmd: fulfil([1, -1]),
      message: /quantities\[1\] must be at least 0/,
    },
    {
      name: "fulfil: quantity fractional",
      op: "fulfil",
      cmd: fulfil([0.5, 1]),
      message: /quantities\[0\] must be an integer/,
    },
    {
      name: "fulfil: quantity NaN",
      op: "fulfil",
      cmd: fulfil([Number.NaN, 1]),
      message: /quantities\[0\] must be an integer/,
    },
    {
      name: "fulfil: quantity a string",
      op: "fulfil",
      cmd: fulfil(["2", 1]),
      message: /quantities\[0\] must be an integer/,
    },
    {
      name: "fulfil: quantity 2**53",
      op: "fulfil",
      cmd: fulfil([2 ** 53, 1]),
      message: /quantities\[0\] must be at most/,
    },
    {
      name: "fulfil: quantity missing (hole)",
      op: "fulfil",
      cmd: fulfil([2, undefined]),
      message: /quantities\[1\] must be an integer/,
    },
    {
      name: "fulfil: quantities longer than lines",
      op: "fulfil",
      cmd: fulfil([1, 1, 0]),
      message: /quantities has 3 entries; hold \d+ has 2 lines/,
    },
    {
      name: "fulfil: quantities shorter than lines",
      op: "fulfil",
      cmd: fulfil([1]),
      message: /quantities has 1 entries; hold \d+ has 2 lines/,
    },
    {
      name: "fulfil: quantities empty",
      op: "fulfil",
      cmd: fulfil([]),
      message: /quantities has 0 entries/,
    },
    {
      name: "fulfil: quantity above the line",
      op: "fulfil",
      cmd: fulfil([3, 1]),
      message: /quantities\[0\] is 3; the line holds only 2/,
    },
  );
  // No command at all, or not an object.
  const ops: Op[] = ["receive", "adjust", "reserve", "release", "fulfil"];
  const engineNoCommand: Record<Op, RegExp> = {
    receive: /command must be an object|productId must be/,
    adjust: /command must be an object|productId must be/,
    reserve: /command must be an object/,
    release: /command must be an object|holdId must be a hold id/,
    fulfil: /command must be an object|holdId must be a hold id/,
  };
  for (const op of ops) {
    for (const [name, cmd] of [
      ["null", null],
      ["undefined", undefined],
      ["a number", 5],
      ["a string", "reserve"],
    ] as const) {
      cases.push({
        name: `${op}: command ${name}`,
        op,
        cmd: () => cmd,
        message: /command must be an object/,
        engineMessage: engineNoCommand[op],
      });
    }
  }
  return cases;
}

const cases = buildCases();

function checkFailure(r: unknown, message: RegExp): void {
  expect(r).toMatchObject({ ok: false, code: ErrorCode.InvalidArgument });
  const m = (r as { message: string }).message;
  expect(m).toMatch(message);
  // A clear message names the problem, not a JavaScript artefact.
  expect(m).not.toMatch(/\[object Object\]|undefined|TypeError/);
}

describe("bad input to a partition", () => {
  function setUp(): { p: Partition; ctx: Ctx } {
    const p = new Partition(pid, { partitionCount });
    p.receiveStock({ productId: P, warehouseId: W, quantity: 10 }, T0);
    p.receiveStock({ productId: Q, warehouseId: W, quantity: 10 }, T0);
    const r = p.reserve(
      {
        lines: [
          { productId: P, warehouseId: W, quantity: 2 },
          { productId: Q, warehouseId: W, quantity: 1 },
        ],
      },
      T0,
    );
    if (!r.ok) throw new Error(r.message);
    p.takeOutbox();
    return { p, ctx: { holdId: r.reservation.holdId } };
  }

  function run(p: Partition, op: Op, cmd: unknown): unknown {
    const now = T0 + 1_000;
    switch (op) {
      case "receive":
        return p.receiveStock(cmd as ReceiveStock, now);
      case "adjust":
        return p.adjustStock(cmd as AdjustStock, now);
      case "reserve":
        return p.reserve(cmd as ReserveStock, now);
      case "release":
        return p.release(cmd as ReleaseHold, now);
      case "fulfil":
        return p.fulfil(cmd as FulfilHold, now);
    }
  }

  it("has cases for every command", () => {
    expect(cases.length).toBeGreaterThan(150);
    for (const op of ["receive", "adjust", "reserve", "release", "fulfil"]) {
      expect(cases.some((c) => c.op === op)).toBe(true);
    }
  });

  it.each(cases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    const { p, ctx } = setUp();
    const before = digestPartition(p);
    const seq = p.seq;
    const r = run(p, c.op, c.cmd(ctx));
    checkFailure(r, c.message);
    expect(p.outbox).toEqual([]);
    expect(p.seq).toBe(seq);
    expect(digestPartition(p)).toBe(before);
    p.checkInvariants();
  });

  it("leaves the partition working after every bad command", () => {
    const { p, ctx } = setUp();
    const before = digestPartition(p);
    for (const c of cases) run(p, c.op, c.cmd(ctx));
    expect(digestPartition(p)).toBe(before);
    const r = p.fulfil({ holdId: ctx.holdId, quantities: [2, 1] }, T0 + 2_000);
    expect(r.ok).toBe(true);
    expect(p.position(P, W)).toMatchObject({ available: 8, reserved: 0, fulfilled: 2 });
  });

  it("refuses products of another partition", () => {
    const { p } = setUp();
    const before = digestPartition(p);
    checkFailure(
      p.receiveStock({ productId: OTHER, warehouseId: W, quantity: 1 }, T0),
      /belongs to partition/,
    );
    checkFailure(
      p.reserve(
        {
          lines: [
            { productId: P, warehouseId: W, quantity: 1 },
            { productId: OTHER, warehouseId: W, quantity: 1 },
          ],
        },
        T0,
      ),
      /belongs to partition/,
    );
    expect(digestPartition(p)).toBe(before);
  });
});

describe("bad input through the engine (LMDB in a temp dir)", () => {
  let dir = "";
  let engine: Engine | null = null;
  let ctx: Ctx = { holdId: 0 };
  const now = () => T0 + 5_000;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "stockd-bad-input-"));
    engine = await Engine.open({
      dataDir: dir,
      workerCount: 0,
      partitionCount,
      now,
      manualPulse: true,
    });
    for (const productId of [P, Q]) {
      const r = await engine.receiveStock({ productId, warehouseId: W, quantity: 10 });
      if (!r.ok) throw new Error(r.message);
    }
    const r = await engine.reserve({
      lines: [
        { productId: P, warehouseId: W, quantity: 2 },
        { productId: Q, warehouseId: W, quantity: 1 },
      ],
    });
    if (!r.ok) throw new Error(r.message);
    ctx = { holdId: r.reservation.holdId };
    await engine.drain();
  });

  afterAll(async () => {
    await engine?.close();
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  function run(e: Engine, op: Op, cmd: unknown): Promise<unknown> {
    switch (op) {
      case "receive":
        return e.receiveStock(cmd as ReceiveStock);
      case "adjust":
        return e.adjustStock(cmd as AdjustStock);
      case "reserve":
        return e.reserve(cmd as ReserveStock);
      case "release":
        return e.release(cmd as ReleaseHold);
      case "fulfil":
        return e.fulfil(cmd as FulfilHold);
    }
  }

  it("answers every case INVALID_ARGUMENT and changes nothing", async () => {
    const e = engine!;
    const digests = await e.digests();
    expect(Object.keys(digests)).toHaveLength(partitionCount);
    const journaled = (await e.stats()).eventsJournaled;
    const wrong: string[] = [];
    for (const c of cases) {
      const r = await run(e, c.op, c.cmd(ctx));
      await e.drain();
      try {
        checkFailure(r, c.engineMessage ?? c.message);
      } catch (err) {
        wrong.push(`${c.name}: ${JSON.stringify(r)} (${(err as Error).message})`);
      }
      const now = await e.digests();
      if (JSON.stringify(now) !== JSON.stringify(digests))
        wrong.push(`${c.name}: changed the state`);
    }
    expect(wrong).toEqual([]);
    expect(await e.digests()).toEqual(digests);
    expect((await e.stats()).eventsJournaled).toBe(journaled);
    await e.checkInvariants();
  });

  it("answers the same when every bad command arrives in one batch", async () => {
    const e = engine!;
    const digests = await e.digests();
    const results = await Promise.all(cases.map((c) => run(e, c.op, c.cmd(ctx))));
    results.forEach((r, i) => {
      const c = cases[i]!;
      checkFailure(r, c.engineMessage ?? c.message);
    });
    expect(await e.digests()).toEqual(digests);
  });

  it("answers a well-formed hold id of no partition HOLD_NOT_FOUND, changing nothing", async () => {
    const e = engine!;
    const digests = await e.digests();
    for (const holdId of [holdIdOf(1, partitionCount + 3), holdIdOf(10 ** 9, pid)]) {
      expect(await e.release({ holdId })).toMatchObject({
        ok: false,
        code: ErrorCode.HoldNotFound,
      });
      expect(await e.fulfil({ holdId })).toMatchObject({ ok: false, code: ErrorCode.HoldNotFound });
    }
    expect(await e.digests()).toEqual(digests);
  });

  it("still works after all of it", async () => {
    const e = engine!;
    const r = await e.fulfil({ holdId: ctx.holdId, quantities: [1, 1] });
    expect(r).toMatchObject({ ok: true, holdId: ctx.holdId, quantities: [1, 1] });
    expect(await e.position(P, W)).toMatchObject({ available: 9, reserved: 0, fulfilled: 1 });
    await e.checkInvariants();
  });
});
