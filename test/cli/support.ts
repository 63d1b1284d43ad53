import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { AdjustmentReason, type PositionView, partitionOf } from "../../src/engine/index.ts";
import { Engine } from "../../src/host/index.ts";
import { Store } from "../../src/persistence/index.ts";

// Shared by the CLI tests: a real data directory written by the engine, and
// the real `stockd` binary run as a child process.

export const repoDir = fileURLToPath(new URL("../../", import.meta.url));
const bin = join(repoDir, "bin", "stockd.js");

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "stockd-cli-"));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The environment without any STOCKD_ variable of the caller's, plus `extra`. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("STOCKD_")) env[k] = v;
  return { ...env, ...extra };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/stockd.js ...args` to completion. */
export function cli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: repoDir,
      env: childEnv(env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

export function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

// ---- the data directory ------------------------------------------------------

export const partitionCount = 4;

/** The first product id of the form `<prefix>-<n>` that lives in `partition`. */
function productIn(partition: number, prefix: string): string {
  for (let n = 0; ; n++) {
    const id = `${prefix}-${n}`;
    if (partitionOf(id, partitionCount) === partition) return id;
  }
}

export interface Fixture {
  dir: string;
  t0Ms: number;
  /** Products in partitions 0, 1 and 2; partition 3 stays empty. */
  a: string;
  b: string;
  c: string;
  /** Positions as the engine reported them before it closed, by `product@warehouse`. */
  positions: Map<string, PositionView>;
  /** Open at close: a@blr x2 (request r-a1) and c@blr x1. */
  holdA1: number;
  holdC: number;
  /** Expired by the pulse: a@blr x1 + a@del x1. */
  holdA2: number;
  holdB: number;
  /** Events per partition: seqs run 1..n. */
  eventCounts: number[];
}

const minuteMs = 60_000;
const openHoldMs = 2 * 3_600_000;

function ok<T extends { ok: boolean }>(r: T): T & { ok: true } {
  if (!r.ok) throw new Error(`fixture command failed: ${JSON.stringify(r)}`);
  return r as T & { ok: true };
}

/**
 * Writes a data directory of 4 partitions with the engine in-process, on a
 * clock that starts at `t0Ms` and moves a minute per step: stock received,
 * adjusted, reserved (one hold spanning two warehouses), released, fulfilled,
 * refused, and one hold expired by the pulse. Two holds stay open, due
 * two hours after they were taken.
 */
export async function buildDataDir(dir: string, t0Ms: number): Promise<Fixture> {
  let nowMs = t0Ms;
  const engine = await Engine.open({
    dataDir: dir,
    workerCount: 0,
    partitionCount,
    holdDurationMs: 1000,
    now: () => nowMs,
    manualPulse: true,
  });
  const [a, b, c] = [productIn(0, "phone"), productIn(1, "case"), productIn(2, "cable")];
  try {
    ok(await engine.receiveStock({ productId: a, warehouseId: "blr", quantity: 10 }));
    ok(await engine.receiveStock({ productId: a, warehouseId: "del", quantity: 5 }));
    ok(await engine.receiveStock({ productId: b, warehouseId: "blr", quantity: 3 }));
    ok(await engine.receiveStock({ productId: c, warehouseId: "blr", quantity: 7 }));
    nowMs += minuteMs;
    const a1 = ok(
      await engine.reserve({
        lines: [{ productId: a, warehouseId: "blr", quantity: 2 }],
        requestId: "r-a1",
        holdDurationMs: openHoldMs,
      }),
    );
    nowMs += minuteMs;
    const a2 = ok(
      await engine.reserve({
        lines: [
          { productId: a, warehouseId: "blr", quantity: 1 },
          { productId: a, warehouseId: "del", quantity: 1 },
        ],
        requestId: "r-a2",
      }),
    );
    nowMs += minuteMs;
    engine.pulse();
    await engine.drain();
    nowMs += minuteMs;
    const hb = ok(
      await engine.reserve({ lines: [{ productId: b, warehouseId: "blr", quantity: 3 }] }),
    );
    ok(await engine.fulfil({ holdId: hb.reservation.holdId, quantities: [2] }));
    nowMs += minuteMs;
    const refused = await engine.reserve({
      lines: [{ productId: c, warehouseId: "blr", quantity: 10 }],
      requestId: "r-c-big",
    });
    if (refused.ok) throw new Error("fixture: the big reservation should be refused");
    nowMs += minuteMs;
    ok(
      await engine.adjustStock({
        productId: c,
        warehouseId: "blr",
        delta: -1,
        reason: AdjustmentReason.Damage,
      }),
    );
    nowMs += minuteMs;
    const c1 = ok(
      await engine.reserve({ lines: [{ productId: c, warehouseId: "blr", quantity: 2 }] }),
    );
    ok(await engine.release({ holdId: c1.reservation.holdId }));
    nowMs += minuteMs;
    const c2 = ok(
      await engine.reserve({
        lines: [{ productId: c, warehouseId: "blr", quantity: 1 }],
        holdDurationMs: openHoldMs,
      }),
    );
    await engine.drain();
    const positions = new Map<string, PositionView>();
    for (const [p, w] of [
      [a, "blr"],
      [a, "del"],
      [b, "blr"],
      [c, "blr"],
    ] as const) {
      const view = await engine.position(p, w);
      if (view === null) throw new Error(`fixture: no position ${p}@${w}`);
      positions.set(`${p}@${w}`, view);
    }
    const held = await engine.hold(a2.reservation.holdId);
    if (held?.status !== "EXPIRED") throw new Error(`fixture: hold a2 is ${held?.status}`);
    return {
      dir,
      t0Ms,
      a,
      b,
      c,
      positions,
      holdA1: a1.reservation.holdId,
      holdA2: a2.reservation.holdId,
      holdB: hb.reservation.holdId,
      holdC: c2.reservation.holdId,
      eventCounts: [5, 3, 6, 0],
    };
  } finally {
    await engine.close();
  }
}

// ---- damage ------------------------------------------------------------------------

/** Flips the last payload byte of the journal record holding `seq`; returns
 * that record's key seq (its last event's seq). */
export async function corruptJournalRecord(
  dir: string,
  partition: number,
  seq: number,
): Promise<number> {
  const store = Store.open(dir);
  try {
    const key = store.rawJournalKeys(partition).find((k) => k[1] >= seq);
    if (key === undefined) throw new Error(`no journal record at seq ${seq}`);
    const value = Buffer.from(store.rawGetJournal(key)!);
    // The frame is [format][crc32 x4][payload]: this byte is payload.
    value[value.length - 1]! ^= 0x01;
    await store.rawPutJournal(key, value);
    return key[1];
  } finally {
    await store.close();
  }
}

/** Flips the last payload byte of the partition's newest snapshot; returns its seq. */
export async function corruptNewestSnapshot(dir: string, partition: number): Promise<number> {
  const store = Store.open(dir);
  try {
    const key = store.rawSnapshotKeys(partition).at(-1);
    if (key === undefined) throw new Error(`partition ${partition} has no snapshot`);
    const value = Buffer.from(store.rawGetSnapshot(key)!);
    value[value.length - 1]! ^= 0x01;
    await store.rawPutSnapshot(key, value);
    return key[1];
  } finally {
    await store.close();
  }
}

// ---- serve ---------------------------------------------------------------------------

export interface LogLine {
  msg?: string;
  level?: number;
  [field: string]: unknown;
}

/** Longest wait for a log line; only a guard against a hung child. */
const logWaitMsMax = 60_000;

export interface Served {
  child: ChildProcess;
  logs: LogLine[];
  /** Resolves with the first log line (seen or to come) that matches. */
  waitForLog(match: (line: LogLine) => boolean, what: string): Promise<LogLine>;
  exit: Promise<CliResult>;
}

/** Starts `stockd serve ...args` and follows its JSON log on stdout. */
export function serve(args: string[], env: Record<string, string> = {}): Served {
  const child = spawn(process.execPath, [bin, "serve", ...args], {
    cwd: repoDir,
    env: childEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: LogLine[] = [];
  let stdout = "";
  let stderr = "";
  const waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
  });
  createInterface({ input: child.stdout! }).on("line", (text) => {
    stdout += `${text}\n`;
    const line = JSON.parse(text) as LogLine;
    logs.push(line);
    for (const w of waiters.filter((x) => x.match(line))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  });
  const exit = new Promise<CliResult>((resolve) => {
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  const waitForLog = (match: (line: LogLine) => boolean, what: string) => {
    const seen = logs.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${what} log line; stdout:\n${stdout}\nstderr:\n${stderr}`)),
        logWaitMsMax,
      );
      waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exit.then((r) => {
        clearTimeout(timer);
        reject(
          new Error(
            `stockd serve exited (${r.code}) before its ${what} log line; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`,
          ),
        );
      });
    });
  };
  return { child, logs, waitForLog, exit };
}
