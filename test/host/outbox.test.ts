import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep, setImmediate as turn } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode, limits } from "../../src/engine/index.ts";
import { Engine } from "../../src/host/index.ts";

// While a worker owes answers, commands for it wait on the main thread and
// leave together with its next answer: one message per journal commit, not
// one per event-loop turn. Its journal commits are held open here by a
// replicate function the test releases (the worker's commit waits for it),
// so what travels when is not left to timing.

const dirs: string[] = [];
const engines: Engine[] = [];
const releases: (() => void)[] = [];

afterEach(async () => {
  for (const r of releases.splice(0)) r();
  await Promise.all(engines.splice(0).map((e) => e.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** An engine on one worker whose commits wait until `release()` (or
 * fail at `fail()`). */
async function gated(): Promise<{
  e: Engine;
  release: () => void;
  fail: () => void;
  commits: () => number;
}> {
  const dataDir = mkdtempSync(join(tmpdir(), "stockd-outbox-"));
  dirs.push(dataDir);
  let open = true;
  let commits = 0;
  const waiting: { resolve: () => void; reject: (err: Error) => void }[] = [];
  const e = await Engine.open({
    dataDir,
    partitionCount: 4,
    workerCount: 1,
    replicate: () => {
      commits++;
      return open
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }));
    },
  });
  engines.push(e);
  expect((await e.receiveStock({ productId: "p", warehouseId: "w", quantity: 10_000 })).ok).toBe(
    true,
  );
  open = false;
  commits = 0;
  const release = () => {
    open = true;
    for (const w of waiting.splice(0)) w.resolve();
  };
  const fail = () => {
    for (const w of waiting.splice(0)) w.reject(new Error("replica unreachable"));
  };
  releases.push(release);
  return { e, release, fail, commits: () => commits };
}

const sentBy = async (e: Engine) => (await e.stats()).messagesSent[0]!;

const reserve = (e: Engine) =>
  e.reserve({ lines: [{ productId: "p", warehouseId: "w", quantity: 1 }] });

describe("the outbox to a worker", () => {
  it("holds commands while the worker owes answers and sends them with its answer", async () => {
    const { e, release, commits } = await gated();
    const before = await sentBy(e);
    const first = reserve(e);
    // The first reservation's commit starts and is held open ...
    for (let t = Date.now(); commits() === 0; await turn()) {
      if (Date.now() - t > 10_000) throw new Error("the worker never started its commit");
    }
    // ... so the next 50, one per event-loop turn, wait here.
    const later: ReturnType<typeof reserve>[] = [];
    for (let i = 0; i < 50; i++) {
      later.push(reserve(e));
      await turn();
    }
    expect(commits()).toBe(1);
    release();
    const answers = await Promise.all([first, ...later]);
    expect(answers.every((a) => a.ok)).toBe(true);
    // The first, the 50 together, then the stats call that counts them.
    expect((await sentBy(e)) - before).toBe(3);
    expect(await e.position("p", "w")).toMatchObject({ available: 10_000 - 51, reserved: 51 });
  });

  it("sends a held outbox at once when it reaches workerHoldCountMax", async () => {
    const { e, release } = await gated();
    const before = await sentBy(e);
    const first = reserve(e);
    await turn();
    await turn();
    const n = limits.workerHoldCountMax + 10;
    const many = Array.from({ length: n }, () => reserve(e));
    await turn();
    await turn();
    // Sent without waiting for the first answer, so that the worker applies
    // them while the commit is in flight; a read after them waits for that
    // commit (answers keep their order).
    const inv = await Promise.race([
      e.position("p", "w").then(() => "answered"),
      sleep(100).then(() => "waiting"),
    ]);
    expect(inv).toBe("waiting");
    release();
    const answers = await Promise.all([first, ...many]);
    expect(answers.every((a) => a.ok)).toBe(true);
    // The first, the n at once, the inventory read, then the stats call.
    expect((await sentBy(e)) - before).toBe(4);
  });

  it("answers held commands Unavailable when the worker's journal fails, and takes no more", async () => {
    const { e, fail, commits } = await gated();
    const first = reserve(e);
    for (let t = Date.now(); commits() === 0; await turn()) {
      if (Date.now() - t > 10_000) throw new Error("the worker never started its commit");
    }
    const held = Array.from({ length: 20 }, () => reserve(e));
    await turn();
    // The commit fails: the worker answers the first and stops; the held
    // ones leave with that answer and reach a worker that has failed.
    fail();
    const answers = await Promise.all([first, ...held]);
    for (const a of answers) expect(a).toMatchObject({ ok: false, code: ErrorCode.Unavailable });
    expect(e.broken).toMatch(/replica unreachable/);
    expect(await reserve(e)).toMatchObject({ ok: false, code: ErrorCode.Unavailable });
    // The worker's answers to the held commands came after the engine broke,
    // and were dropped: give them time to arrive.
    await sleep(200);
  });
});
