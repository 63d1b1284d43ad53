import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { digestPartition } from "../../src/engine/index.ts";
import { Engine } from "../../src/host/index.ts";
import {
  type Durability,
  recoverPartition,
  Store,
  snapshotPartition,
} from "../../src/persistence/index.ts";

// SIGKILL at random moments while a child process runs receipts,
// reservations, releases and fulfilments (fsync, worker threads), again and
// again on one data directory. After each kill: nothing acknowledged is lost,
// nothing appears that was never sent, the invariants hold, and replaying the
// journal from empty gives the recovered state.

const seed = 0x5eed_c0de;
const partitionCount = 8;
const root = join(import.meta.dirname, "../..");
const dirs: string[] = [];
const children = new Set<ChildProcess>();
let engine: Engine | null = null;

afterEach(async () => {
  for (const c of children) c.kill("SIGKILL");
  await engine?.close();
  engine = null;
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** mulberry32: the kill moments, the same for the same seed. */
function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs the child until `killAfterMs` after it is ready; returns its lines. */
function runUntilKilled(
  dir: string,
  durability: Durability,
  childSeed: number,
  killAfterMs: number,
): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "test/fixtures/crash_child.ts", dir, String(childSeed), durability],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.add(child);
    let out = "";
    let err = "";
    let killed = false;
    // A child that never gets ready is killed too, and the test fails.
    const startup = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stdout!.on("data", (d: Buffer) => {
      const wasReady = out.startsWith("READY\n");
      out += d.toString();
      if (!wasReady && out.startsWith("READY\n")) {
        clearTimeout(startup);
        setTimeout(() => {
          killed = true;
          child.kill("SIGKILL");
        }, killAfterMs);
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    // "close": the process is gone and every byte of its output was read.
    child.on("close", (_code, signal) => {
      clearTimeout(startup);
      children.delete(child);
      if (!killed || signal !== "SIGKILL") {
        reject(new Error(`the child ended by itself (${signal}): ${err}`));
      } else {
        // A line cut short by the kill carries no information.
        const lines = out.split("\n");
        lines.pop();
        resolve(lines);
      }
    });
  });
}

interface HoldRecord {
  sku: string;
  quantity: number;
  /** An acknowledged release or fulfilment (then the units fulfilled). */
  ended: { status: "RELEASED" } | { status: "FULFILLED"; quantity: number } | null;
  /** A release or fulfilment sent and not acknowledged: it may have landed. */
  maybe: "RELEASED" | "FULFILLED" | null;
}

const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);

// relaxed promises the same as fsync for a process crash (the OS still has
// every committed transaction); fewer cycles, as its code path is the same.
it.each([
  ["fsync", 20],
  ["relaxed", 8],
] as const)(
  "loses nothing acknowledged (%s) across %i SIGKILLs of a loaded engine",
  async (durability, cycles) => {
    const dir = mkdtempSync(join(tmpdir(), `stockd-crash-${durability}-`));
    dirs.push(dir);
    const random = prng(seed);
    const holds = new Map<number, HoldRecord>();
    // Per SKU ("product warehouse"): received and fulfilled as recovered after
    // the previous cycle, and acknowledged so far in total.
    const received = new Map<string, number>();
    const fulfilled = new Map<string, number>();
    const ackedReceivedTotal = new Map<string, number>();
    const totals = { receipts: 0, holds: 0, releases: 0, fulfilments: 0 };

    for (let cycle = 0; cycle < cycles; cycle++) {
      const killAfterMs = 100 + Math.floor(random() * 500);
      const startedMs = performance.now();
      const lines = await runUntilKilled(dir, durability, seed + cycle, killAfterMs);
      const childMs = performance.now() - startedMs;
      expect(lines[0]).toBe("READY");

      const ackedR = new Map<string, number>();
      const sentR = new Map<string, number>();
      const ackedF = new Map<string, number>();
      const sentF = new Map<string, number>();
      const n = { R: 0, H: 0, L: 0, F: 0, sent: 0 };
      for (const line of lines.slice(1)) {
        const f = line.split(" ");
        if (f[0] === "X") throw new Error(`cycle ${cycle}: unexpected answer: ${line}`);
        if (f[0] === "S") {
          n.sent++;
          if (f[1] === "R") add(sentR, `${f[2]} ${f[3]}`, Number(f[4]));
          else {
            const h = holds.get(Number(f[2]));
            if (h === undefined) throw new Error(`cycle ${cycle}: ${line} of an unknown hold`);
            if (f[1] === "L") h.maybe = "RELEASED";
            else {
              h.maybe = "FULFILLED";
              add(sentF, h.sku, Number(f[3]));
            }
          }
        } else if (f[0] === "R") {
          n.R++;
          add(ackedR, `${f[1]} ${f[2]}`, Number(f[3]));
          add(ackedReceivedTotal, `${f[1]} ${f[2]}`, Number(f[3]));
        } else if (f[0] === "H") {
          n.H++;
          const holdId = Number(f[1]);
          expect(holds.has(holdId), `hold ${holdId} acknowledged twice`).toBe(false);
          holds.set(holdId, {
            sku: `${f[2]} ${f[3]}`,
            quantity: Number(f[4]),
            ended: null,
            maybe: null,
          });
        } else if (f[0] === "L" || f[0] === "F") {
          const h = holds.get(Number(f[1]))!;
          if (f[0] === "L") {
            n.L++;
            h.ended = { status: "RELEASED" };
          } else {
            n.F++;
            h.ended = { status: "FULFILLED", quantity: Number(f[2]) };
            add(ackedF, h.sku, Number(f[2]));
          }
        } else throw new Error(`cycle ${cycle}: unexpected line ${JSON.stringify(line)}`);
      }
      totals.receipts += n.R;
      totals.holds += n.H;
      totals.releases += n.L;
      totals.fulfilments += n.F;

      engine = await Engine.open({
        dataDir: dir,
        workerCount: 0,
        manualPulse: true,
        snapshotEveryEvents: 0,
      });
      expect(engine.partitionCount).toBe(partitionCount);
      const e = engine;

      // Every acknowledged hold exists, as acknowledged.
      const ids = [...holds.keys()];
      const views = await Promise.all(ids.map((id) => e.hold(id)));
      const viewById = new Map(ids.map((id, i) => [id, views[i]]));
      for (const [id, h] of holds) {
        const v = viewById.get(id);
        const where = `cycle ${cycle}, hold ${id}`;
        if (h.ended !== null) {
          expect(v?.status, where).toBe(h.ended.status);
          continue;
        }
        const allowed = h.maybe === null ? ["OPEN"] : ["OPEN", h.maybe];
        expect(allowed, where).toContain(v?.status);
        if (v?.status === "OPEN") {
          const [productId, warehouseId] = h.sku.split(" ");
          expect(v.lines, where).toEqual([{ productId, warehouseId, quantity: h.quantity }]);
        }
      }

      // Every acknowledged receipt and fulfilment is counted, and nothing that
      // was never sent.
      const skus = new Set([...received.keys(), ...sentR.keys(), ...sentF.keys()]);
      for (const sku of skus) {
        const [productId, warehouseId] = sku.split(" ") as [string, string];
        const p = await e.position(productId, warehouseId);
        const got = { received: p?.received ?? 0, fulfilled: p?.fulfilled ?? 0 };
        const before = { received: received.get(sku) ?? 0, fulfilled: fulfilled.get(sku) ?? 0 };
        const where = `cycle ${cycle}, ${sku}`;
        expect(got.received, where).toBeGreaterThanOrEqual(
          before.received + (ackedR.get(sku) ?? 0),
        );
        expect(got.received, where).toBeGreaterThanOrEqual(ackedReceivedTotal.get(sku) ?? 0);
        expect(got.received, where).toBeLessThanOrEqual(before.received + (sentR.get(sku) ?? 0));
        expect(got.fulfilled, where).toBeGreaterThanOrEqual(
          before.fulfilled + (ackedF.get(sku) ?? 0),
        );
        expect(got.fulfilled, where).toBeLessThanOrEqual(before.fulfilled + (sentF.get(sku) ?? 0));
        received.set(sku, got.received);
        fulfilled.set(sku, got.fulfilled);
      }
      // What was sent and never answered has now landed or not, for good.
      for (const [id, h] of holds) {
        if (h.ended !== null || h.maybe === null) continue;
        const status = viewById.get(id)?.status;
        if (status === "RELEASED") h.ended = { status };
        else if (status === "FULFILLED") h.ended = { status, quantity: Number.NaN };
        h.maybe = null;
      }

      await e.checkInvariants();
      const live = await e.digests();
      const recovered = e.recovered;
      await e.close();
      engine = null;

      // Replay from empty gives the recovered state (which came from the
      // newest snapshot plus the journal).
      const store = Store.open(dir);
      try {
        for (let id = 0; id < partitionCount; id++) {
          const r = recoverPartition(store, id, { partitionCount }, { fromEmpty: true });
          expect(digestPartition(r.partition), `cycle ${cycle}, partition ${id}`).toBe(live[id]);
          // Now and then a snapshot, so that later starts recover from one.
          if (cycle % 3 === 1) await snapshotPartition(store, id, { partitionCount });
        }
      } finally {
        await store.close();
      }

      const snapshots = recovered.filter((r) => r.snapshotSeq > 0).length;
      process.stdout.write(
        `cycle ${cycle}: killed ${killAfterMs} ms after READY; acknowledged ${n.R} receipts, ` +
          `${n.H} holds, ${n.L} releases, ${n.F} fulfilments; ${n.sent} announced; ` +
          `${snapshots} partitions from a snapshot; child ${Math.round(childMs)} ms, ` +
          `checks ${Math.round(performance.now() - startedMs - childMs)} ms\n`,
      );
    }
    process.stdout.write(`crash: ${JSON.stringify(totals)} over ${cycles} cycles\n`);
    expect(totals.receipts).toBeGreaterThan(0);
    expect(totals.holds).toBeGreaterThan(0);
    expect(totals.releases).toBeGreaterThan(0);
    expect(totals.fulfilments).toBeGreaterThan(0);
  },
  180_000,
);
