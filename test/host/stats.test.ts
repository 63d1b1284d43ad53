import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { partitionOf } from "../../src/engine/index.ts";
import { Engine } from "../../src/host/index.ts";

// The engine's figures for operators: commit times per bucket, and each
// worker's event-loop lag over its last window.

const dirs: string[] = [];
const engines: Engine[] = [];

afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function open(workerCount: number, loopLagWindowMs = 300): Promise<Engine> {
  const dataDir = mkdtempSync(join(tmpdir(), "stockd-stats-"));
  dirs.push(dataDir);
  const engine = await Engine.open({
    dataDir,
    partitionCount: 4,
    workerCount,
    durability: "relaxed",
    loopLagWindowMs,
  });
  engines.push(engine);
  return engine;
}

/** The lateness a worker busy with digests must show, in ms. */
const busyLagMsMin = 30;

describe("engine stats", () => {
  it("counts every commit into one bucket of the commit-time histogram", async () => {
    const engine = await open(2);
    for (let i = 0; i < 20; i++) {
      const r = await engine.receiveStock({ productId: `p${i}`, warehouseId: "w", quantity: 5 });
      expect(r.ok).toBe(true);
    }
    const s = await engine.stats();
    expect(s.commits).toBeGreaterThanOrEqual(20);
    expect(s.commitMsCounts.reduce((a, b) => a + b, 0)).toBe(s.commits);
  });

  it("reports no lag for a worker whose first window has not closed", async () => {
    const engine = await open(2, 60_000);
    expect((await engine.stats()).loopLags).toEqual([null, null]);
  });

  it("reports each worker's event-loop lag, and a worker kept busy shows it", async () => {
    const engine = await open(2);
    // Each worker's first 300 ms window closes soon after it started.
    const deadline0 = performance.now() + 5_000;
    let idle = (await engine.stats()).loopLags;
    while (idle.some((l) => l === null) && performance.now() < deadline0) {
      await sleep(100);
      idle = (await engine.stats()).loopLags;
    }
    expect(idle).toHaveLength(2);
    for (const l of idle) {
      expect(l).not.toBeNull();
      expect(l!.p99Ms).toBeGreaterThanOrEqual(0);
      expect(l!.maxMs).toBeGreaterThanOrEqual(l!.p99Ms);
    }
    // One product, so one worker: 100,000 holds, then its whole state
    // digested (hashed in one go, holds included) a few times: each digest
    // keeps that worker's loop from turning for tens of ms.
    const r = await engine.receiveStock({ productId: "busy", warehouseId: "w", quantity: 1e9 });
    expect(r.ok).toBe(true);
    // Partitions are dealt to workers in turn (partition % workers).
    const busyWorker = partitionOf("busy", 4) % 2;
    const reserves = [];
    for (let i = 0; i < 100_000; i++) {
      reserves.push(
        engine.reserve({ lines: [{ productId: "busy", warehouseId: "w", quantity: 1 }] }),
      );
    }
    expect((await Promise.all(reserves)).every((x) => x.ok)).toBe(true);
    // Keep digesting while the figures are read, so that a window the test
    // reads late (a loaded machine) cannot hide the lateness: every window
    // meanwhile holds some of it.
    let digesting = true;
    const digests = (async () => {
      while (digesting) await engine.digests();
    })();
    let seen = 0;
    let other = 0;
    const deadline = performance.now() + 5_000;
    try {
      while (performance.now() < deadline && (seen < busyLagMsMin || seen <= other)) {
        await sleep(100);
        const lags = (await engine.stats()).loopLags;
        seen = Math.max(seen, lags[busyWorker]?.maxMs ?? 0);
        other = Math.max(other, lags[1 - busyWorker]?.maxMs ?? 0);
      }
    } finally {
      digesting = false;
      await digests;
    }
    // A digest of 100,000 holds keeps its worker's loop from turning for
    // ~40-100 ms here; the idle worker's loop turns on time.
    expect(seen).toBeGreaterThanOrEqual(busyLagMsMin);
    expect(seen).toBeGreaterThan(other);
  });

  it("reports no worker lag in-process (the main thread's is the process's own metric)", async () => {
    const engine = await open(0);
    await sleep(400);
    expect((await engine.stats()).loopLags).toEqual([null]);
  });
});
