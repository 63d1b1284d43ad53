import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep, setImmediate as turn } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../src/engine/index.ts";
import { Engine } from "../../src/host/index.ts";

// A worker whose journal fails answers what it holds Unavailable, and each
// later command at once; the engine is then broken and answers everything
// Unavailable. Commands already on their way to the worker when it failed
// are answered by it after the engine broke: those answers are dropped, not
// delivered a second time (which threw in the main thread and ended the
// process).
// The worker's commit here waits on a replicate function that the test
// fails, so the order of events is not left to timing.

const dirs: string[] = [];
const engines: Engine[] = [];
const releases: (() => void)[] = [];

afterEach(async () => {
  for (const r of releases.splice(0)) r();
  await Promise.all(engines.splice(0).map((e) => e.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** An engine on one worker whose commits wait until `fail()` (or the end). */
async function gated(): Promise<{ e: Engine; fail: () => void; commits: () => number }> {
  const dataDir = mkdtempSync(join(tmpdir(), "stockd-broken-"));
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
  expect((await e.receiveStock({ productId: "p", warehouseId: "w", quantity: 100 })).ok).toBe(true);
  open = false;
  commits = 0;
  releases.push(() => {
    open = true;
    for (const w of waiting.splice(0)) w.resolve();
  });
  const fail = () => {
    for (const w of waiting.splice(0)) w.reject(new Error("replica unreachable"));
  };
  return { e, fail, commits: () => commits };
}

const reserve = (e: Engine) =>
  e.reserve({ lines: [{ productId: "p", warehouseId: "w", quantity: 1 }] });

describe("an engine whose worker's journal fails", () => {
  it("answers everything Unavailable once, and drops what the worker answers after", async () => {
    const { e, fail, commits } = await gated();
    const first = reserve(e);
    for (let t = Date.now(); commits() === 0; await turn()) {
      if (Date.now() - t > 10_000) throw new Error("the worker never started its commit");
    }
    const waiting = Array.from({ length: 5 }, () => reserve(e));
    await turn();
    await turn();
    // The commit fails. The failure reaches the worker before the next
    // commands do (both leave this thread in that order), so the worker
    // answers these after its own failure reached this thread.
    fail();
    const late = Array.from({ length: 20 }, () => reserve(e));
    const answers = await Promise.all([first, ...waiting, ...late]);
    for (const a of answers) expect(a).toMatchObject({ ok: false, code: ErrorCode.Unavailable });
    expect(answers[0]).toMatchObject({ message: expect.stringMatching(/replica unreachable/) });
    expect(e.broken).toMatch(/replica unreachable/);
    expect(await reserve(e)).toMatchObject({ ok: false, code: ErrorCode.Unavailable });
    // The worker's answers to the late commands arrive after the engine
    // broke: give them time to, and to be dropped (a second delivery threw
    // in this thread).
    await sleep(300);
  });
});
