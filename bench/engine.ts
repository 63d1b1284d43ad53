// The stockd engine benchmark: throughput without and with the journal,
// latency under closed-loop load, replay speed and memory per item.
// Prints readable tables, then one `RESULT {json}` line with every figure.
// Figures are measured and compared with targets, never asserted.
//
//   npm run bench:engine [-- --quick] [-- --only partition|workers|journal|host|replay|memory]
//
// It runs with the server's young generation (`--max-semi-space-size=64`,
// as `npm start` runs stockd), so that the host measured here collects
// garbage as a server's threads do.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { Engine } from "../src/host/index.ts";
import { type ClientRun, runClients, stockEngine } from "./lib/clients.ts";
import { type HostRun, runHost } from "./lib/host_driver.ts";
import { type LoopOptions, type LoopResult, runPartitionLoop } from "./lib/partition_loop.ts";
import type { FromPartitionWorker, PartitionWorkerData } from "./lib/partition_worker.ts";
import { type ReplayRun, runReplay } from "./lib/replay.ts";
import { grouped, ratePerS, round, type Target, table, target, verdictText } from "./lib/stats.ts";
import type { MemoryFigure, MemoryRun } from "./memory.ts";

const sectionNames = ["partition", "workers", "journal", "host", "replay", "memory"] as const;
type SectionName = (typeof sectionNames)[number];

interface Settings {
  quick: boolean;
  only: SectionName[];
  warmupMs: number;
  durationMs: number;
  journalWarmupMs: number;
  journalDurationMs: number;
  replayEventCountMin: number;
  memoryItemCount: number;
}

/** Targets, from the design: per worker without journal, with the fsync
 * journal, replay, and memory per position and per open hold. */
const reservationsPerSPerWorkerMin = 1_000_000;
const fsyncReservationsPerSMin = 300_000;
const replayEventsPerSMin = 1_000_000;
const positionBytesMax = 200;
const holdBytesMax = 150;

const skuCount = 10_000;
const inFlightCounts = [64, 512, 4096] as const;
const journalPartitionCount = 64;
const batchCount = 1024;

function parseArgs(argv: string[]): Settings {
  const quick = argv.includes("--quick");
  const only: SectionName[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== "--only") continue;
    for (const name of (argv[i + 1] ?? "").split(",")) {
      if (!(sectionNames as readonly string[]).includes(name)) {
        console.error(
          `--only takes one of ${sectionNames.join(", ")} (comma-separated); got "${name}"`,
        );
        process.exit(2);
      }
      only.push(name as SectionName);
    }
  }
  return {
    quick,
    only: only.length > 0 ? only : [...sectionNames],
    warmupMs: quick ? 300 : 1000,
    durationMs: quick ? 1000 : 4000,
    journalWarmupMs: quick ? 200 : 1000,
    journalDurationMs: quick ? 700 : 4000,
    replayEventCountMin: quick ? 500_000 : 2_000_000,
    memoryItemCount: 1_000_000,
  };
}

interface Machine {
  cores: number;
  cpuModel: string;
  node: string;
  platform: string;
  memoryBytes: number;
  /** 1-minute load average when the run started: other work on the
   * machine lowers every figure. */
  loadAverageAtStart: number;
  commit: string;
}

function machine(): Machine {
  let commit = "unknown";
  const git = (args: string[]) =>
    execFileSync("git", args, { stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  try {
    commit = git(["rev-parse", "--short", "HEAD"]);
    // Figures from a tree with uncommitted changes say so. No optional
    // locks: reading the status must not write the index.
    if (git(["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]) !== "") {
      commit += "+dirty";
    }
  } catch {
    // Not a git checkout (a tarball): the figures stand without it.
  }
  return {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    memoryBytes: totalmem(),
    loadAverageAtStart: round(loadavg()[0] ?? 0, 2),
    commit,
  };
}

function heading(title: string): void {
  console.log(`\n== ${title}`);
}

// ---- 1. one partition, no journal ---------------------------------------------

interface PartitionFigures {
  reservationsPerS: number;
  pairsPerS: number;
  reservations: number;
  elapsedMs: number;
}

function partitionFigures(r: LoopResult): PartitionFigures {
  return {
    reservationsPerS: ratePerS(r.reservations, r.reserveMs),
    pairsPerS: ratePerS(r.reservations, r.elapsedMs),
    reservations: r.reservations,
    elapsedMs: round(r.elapsedMs),
  };
}

function loopOptions(s: Settings, hot: boolean, seed: number): LoopOptions {
  return { skuCount, hot, warmupMs: s.warmupMs, durationMs: s.durationMs, batchCount, seed };
}

/** Runs of each no-journal figure that a target is judged on (the median). */
const repeatCount = 3;

function repeated<T>(run: () => T): T[] {
  return Array.from({ length: repeatCount }, run);
}

function medianRun<T extends { reservationsPerS: number }>(runs: T[]): T {
  const sorted = [...runs].sort((a, b) => a.reservationsPerS - b.reservationsPerS);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function sectionPartition(s: Settings, targets: Target[]) {
  heading("1. One partition, no journal (Partition in-process, 1 unit per reservation)");
  // Each workload runs three times, judged on the median: one run on a
  // shared machine varies by 10-20%.
  const uniformRuns = repeated(() => partitionFigures(runPartitionLoop(loopOptions(s, false, 1))));
  const hotRuns = repeated(() => partitionFigures(runPartitionLoop(loopOptions(s, true, 1))));
  const uniform = medianRun(uniformRuns);
  const hot = medianRun(hotRuns);
  const tu = target(
    `reservations/s, one partition, uniform (median of ${uniformRuns.length})`,
    uniform.reservationsPerS,
    "/s",
    "atLeast",
    reservationsPerSPerWorkerMin,
  );
  const th = target(
    `reservations/s, one partition, hot SKU (median of ${hotRuns.length})`,
    hot.reservationsPerS,
    "/s",
    "atLeast",
    reservationsPerSPerWorkerMin,
  );
  targets.push(tu, th);
  console.log(
    table(
      ["workload", "reservations/s (reserve only)", "reserve+release pairs/s", "target"],
      [
        [
          `uniform over ${grouped(skuCount)} SKUs`,
          grouped(uniform.reservationsPerS),
          grouped(uniform.pairsPerS),
          verdictText(tu),
        ],
        [
          "hot SKU (one position)",
          grouped(hot.reservationsPerS),
          grouped(hot.pairsPerS),
          verdictText(th),
        ],
      ],
    ),
  );
  console.log(
    `(medians of ${uniformRuns.length} runs; reservations/s per run: uniform ` +
      `${uniformRuns.map((r) => grouped(r.reservationsPerS)).join(" / ")}, hot ` +
      `${hotRuns.map((r) => grouped(r.reservationsPerS)).join(" / ")})`,
  );
  return { uniform, hot, uniformRuns, hotRuns };
}

// ---- 2. every core, no journal ---------------------------------------------------

function runPartitionWorkers(count: number, options: LoopOptions): Promise<LoopResult[]> {
  const entry = new URL("./lib/worker_entry.mjs", import.meta.url);
  const module = new URL("./lib/partition_worker.ts", import.meta.url).href;
  return new Promise((resolve, reject) => {
    const results: LoopResult[] = new Array(count);
    let ready = 0;
    let done = 0;
    const workers: Worker[] = [];
    for (let w = 0; w < count; w++) {
      const workerData: PartitionWorkerData = {
        module,
        options: { ...options, seed: options.seed + w },
      };
      const worker = new Worker(entry, { workerData });
      workers.push(worker);
      worker.on("error", reject);
      worker.on("message", (msg: FromPartitionWorker) => {
        if (msg.t === "failed") reject(new Error(`worker ${w}: ${msg.message}`));
        else if (msg.t === "done") {
          results[w] = msg.result;
          if (++done === count) resolve(results);
        } else if (++ready === count) {
          // Every worker has loaded: start them together.
          for (const x of workers) x.postMessage("go");
        }
      });
    }
  });
}

async function sectionWorkers(s: Settings, cores: number, targets: Target[]) {
  heading(`2. Every core, no journal (${cores} worker threads, one Partition each, uniform)`);
  // Three runs, judged on the one with the median total (see section 1).
  const allRuns: ReturnType<typeof partitionFigures>[][] = [];
  for (let i = 0; i < repeatCount; i++) {
    allRuns.push(
      (await runPartitionWorkers(cores, loopOptions(s, false, 100))).map(partitionFigures),
    );
  }
  const totalOf = (run: ReturnType<typeof partitionFigures>[]) =>
    run.reduce((n, f) => n + f.reservationsPerS, 0);
  const sorted = [...allRuns].sort((a, b) => totalOf(a) - totalOf(b));
  const perWorker = sorted[Math.floor(sorted.length / 2)]!;
  const total = totalOf(perWorker);
  const totalPairs = perWorker.reduce((n, f) => n + f.pairsPerS, 0);
  const meanPerWorker = Math.round(total / cores);
  const t = target(
    `reservations/s per worker, all cores, no journal (median of ${allRuns.length})`,
    meanPerWorker,
    "/s",
    "atLeast",
    reservationsPerSPerWorkerMin,
  );
  targets.push(t);
  const rows = perWorker.map((f, w) => [
    `worker ${w}`,
    grouped(f.reservationsPerS),
    grouped(f.pairsPerS),
    "",
  ]);
  rows.push(["sum", grouped(total), grouped(totalPairs), ""]);
  rows.push([
    "mean per worker",
    grouped(meanPerWorker),
    grouped(totalPairs / cores),
    verdictText(t),
  ]);
  console.log(
    table(["worker", "reservations/s (reserve only)", "reserve+release pairs/s", "target"], rows),
  );
  console.log(
    `(the run with the median total of ${allRuns.length}; mean per worker per run: ` +
      `${allRuns.map((r) => grouped(totalOf(r) / cores)).join(" / ")})`,
  );
  return {
    workers: cores,
    reservationsPerS: total,
    pairsPerS: totalPairs,
    meanPerWorker,
    perWorker,
  };
}

// ---- 3. through the Engine, with the journal ---------------------------------------

interface JournalRow extends ClientRun {
  mode: "in-process" | "workers";
  workerCount: number;
  durability: "fsync" | "relaxed";
}

async function runJournalEngine(
  s: Settings,
  mode: JournalRow["mode"],
  workerCount: number,
  durability: JournalRow["durability"],
): Promise<JournalRow[]> {
  const dataDir = mkdtempSync(join(tmpdir(), "stockd-bench-"));
  const rows: JournalRow[] = [];
  try {
    const engine = await Engine.open({
      dataDir,
      workerCount,
      partitionCount: journalPartitionCount,
      durability,
      holdDurationMs: 3_600_000,
    });
    try {
      const productIds = await stockEngine(engine, skuCount);
      for (const inFlight of inFlightCounts) {
        const run = await runClients(
          engine,
          productIds,
          inFlight,
          s.journalWarmupMs,
          s.journalDurationMs,
        );
        rows.push({ mode, workerCount, durability, ...run });
      }
    } finally {
      await engine.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}

async function sectionJournal(s: Settings, cores: number) {
  heading(
    `3. Engine with the journal (${journalPartitionCount} partitions, ${grouped(skuCount)} uniform SKUs, ` +
      "closed-loop clients: reserve, then release; both journaled)",
  );
  const rows: JournalRow[] = [];
  for (const [mode, workerCount] of [
    ["in-process", 0],
    ["workers", cores],
  ] as const) {
    for (const durability of ["fsync", "relaxed"] as const) {
      rows.push(...(await runJournalEngine(s, mode, workerCount, durability)));
    }
  }
  const ms = (x: number) => x.toFixed(3);
  // fsync and relaxed side by side for each host and load.
  const key = (r: JournalRow) =>
    (r.mode === "workers" ? 1e7 : 0) + r.inFlight * 2 + (r.durability === "fsync" ? 0 : 1);
  const sorted = [...rows].sort((a, b) => key(a) - key(b));
  // No target here: these clients run in the engine's own process (on 2
  // cores, on the cores its workers use) and pay a promise per call; the
  // per-worker target is judged in 3b, a worker's host fed as a worker is.
  const printed = sorted.map((r) => {
    return [
      `${r.mode} (${r.workerCount} workers)`,
      r.durability,
      String(r.inFlight),
      grouped(r.reservationsPerS),
      grouped(r.opsPerS),
      ms(r.reserve.p50Ms),
      ms(r.reserve.p99Ms),
      ms(r.reserve.p999Ms),
      grouped(r.commitsPerS),
      r.eventsPerCommit.toFixed(1),
      ms(r.commitMsMean),
    ];
  });
  const headers = [
    "host",
    "journal",
    "in flight",
    "reservations/s",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "p999 ms",
    "commits/s",
    "events/commit",
    "commit ms",
  ];
  console.log(table(headers, printed));
  console.log(
    "(ops/s counts reservations and releases; latency is reserve call to acknowledgement)",
  );
  return rows;
}

// ---- 3b. one worker's host with the journal, no client ---------------------------------

const hostInFlightCounts = [1024, 4096, 16384] as const;
/** Runs of the configuration the per-worker target is judged on. */
const hostTargetRunCount = repeatCount;

async function runHostOnce(
  s: Settings,
  workload: HostRun["workload"],
  durability: HostRun["durability"],
  inFlight: number,
): Promise<HostRun> {
  const dataDir = mkdtempSync(join(tmpdir(), "stockd-bench-host-"));
  try {
    return await runHost({
      workload,
      dataDir,
      durability,
      partitionCount: journalPartitionCount,
      skuCount,
      inFlight,
      warmupMs: s.journalWarmupMs,
      durationMs: s.journalDurationMs,
    });
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function sectionHost(
  s: Settings,
  targets: Target[],
): Promise<{ rows: HostRun[]; targetRepeats: number[] }> {
  heading(
    `3b. One worker's partition host with the journal (${journalPartitionCount} partitions, ` +
      `${grouped(skuCount)} uniform SKUs), fed command batches as a worker is, no client`,
  );
  const rows: HostRun[] = [];
  for (const [workload, durability] of [
    ["reserve", "fsync"],
    ["reserve+release", "fsync"],
    ["reserve", "relaxed"],
    ["reserve+release", "relaxed"],
  ] as const) {
    for (const inFlight of hostInFlightCounts) {
      rows.push(await runHostOnce(s, workload, durability, inFlight));
    }
  }
  // The target is what one worker sustains: the best reserve-only fsync
  // run (fewer commands in flight leave the host waiting on its commits),
  // run twice more, judged on the median of the three (one run on a shared
  // machine varies by 10-20%).
  const best = rows
    .filter((r) => r.durability === "fsync" && r.workload === "reserve")
    .reduce<HostRun | null>(
      (a, r) => (a === null || r.reservationsPerS > a.reservationsPerS ? r : a),
      null,
    );
  let bestVerdict = "-";
  let repeatsLine = "";
  const repeats: number[] = [];
  if (best !== null) {
    for (let i = 0; i < hostTargetRunCount - 1; i++) {
      repeats.push((await runHostOnce(s, "reserve", "fsync", best.inFlight)).reservationsPerS);
    }
    const samples = [best.reservationsPerS, ...repeats].sort((a, b) => a - b);
    const median = samples[Math.floor(samples.length / 2)]!;
    const t = target(
      `reservations/s per worker, fsync journal, host fed batches (${best.inFlight} in flight, median of ${samples.length})`,
      median,
      "/s",
      "atLeast",
      fsyncReservationsPerSMin,
    );
    targets.push(t);
    bestVerdict = `${verdictText(t)} median`;
    repeatsLine =
      `(the target's runs: reserve, fsync, ${best.inFlight} in flight: ` +
      `${samples.map(grouped).join(" / ")} reservations/s, median ${grouped(median)})`;
  }
  const printed = rows.map((r) => {
    const verdict = r === best ? bestVerdict : "-";
    return [
      r.workload,
      r.durability,
      String(r.inFlight),
      grouped(r.reservationsPerS),
      grouped(r.opsPerS),
      r.latency.p50Ms.toFixed(3),
      r.latency.p99Ms.toFixed(3),
      r.latency.p999Ms.toFixed(3),
      grouped(r.commitsPerS),
      r.eventsPerCommit.toFixed(1),
      r.cpuUsPerOp.toFixed(2),
      verdict,
    ];
  });
  console.log(
    table(
      [
        "workload",
        "journal",
        "in flight",
        "reservations/s",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "commits/s",
        "events/commit",
        "CPU us/op",
        "target",
      ],
      printed,
    ),
  );
  console.log(
    "(ops/s counts reservations and releases; CPU us/op is the whole process, LMDB's thread included)",
  );
  if (repeatsLine !== "") console.log(repeatsLine);
  return { rows, targetRepeats: repeats };
}

// ---- 4. replay ------------------------------------------------------------------------

async function sectionReplay(s: Settings, targets: Target[]): Promise<ReplayRun> {
  heading("4. Replay (recoverPartition from empty, every partition)");
  const dataDir = mkdtempSync(join(tmpdir(), "stockd-bench-"));
  let r: ReplayRun;
  try {
    r = await runReplay(dataDir, s.replayEventCountMin);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  const t = target("replay events/s", r.eventsPerS, "/s", "atLeast", replayEventsPerSMin);
  targets.push(t);
  console.log(
    table(
      [
        "events",
        "partitions",
        "journal MB",
        "build s",
        "replay s",
        "events/s",
        "state matches",
        "target",
      ],
      [
        [
          grouped(r.events),
          String(r.partitionCount),
          (r.journalBytes / 1e6).toFixed(1),
          (r.buildMs / 1000).toFixed(2),
          (r.replayMs / 1000).toFixed(2),
          grouped(r.eventsPerS),
          r.digestsMatch ? "yes" : "NO",
          verdictText(t),
        ],
      ],
    ),
  );
  console.log(
    "(journal: stock received, then reserve/release pairs; one reservation in 4 has a request id)",
  );
  return r;
}

// ---- 5. memory -----------------------------------------------------------------------

function runMemoryChild(count: number): Promise<MemoryRun> {
  const script = fileURLToPath(new URL("./memory.ts", import.meta.url));
  const root = dirname(dirname(script));
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--expose-gc", "--import", "tsx", script, String(count)],
      {
        cwd: root,
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("MEMORY "));
      if (code !== 0 || line === undefined)
        reject(new Error(`memory benchmark exited with ${code}`));
      else resolve(JSON.parse(line.slice("MEMORY ".length)) as MemoryRun);
    });
  });
}

async function sectionMemory(s: Settings, targets: Target[]): Promise<MemoryRun> {
  heading(`5. Memory (child process, --expose-gc, ${grouped(s.memoryItemCount)} of each)`);
  const m = await runMemoryChild(s.memoryItemCount);
  const tp = target(
    "heap+arrays bytes per SKU position",
    m.positions.heapBytesPerItem,
    "B",
    "below",
    positionBytesMax,
  );
  const th = target(
    "heap+arrays bytes per open hold",
    m.holds.heapBytesPerItem,
    "B",
    "below",
    holdBytesMax,
  );
  const tr = target(
    "heap+arrays bytes per open hold with request id",
    m.holdsWithRequestId.heapBytesPerItem,
    "B",
    "below",
    holdBytesMax,
  );
  targets.push(tp, th, tr);
  const row = (name: string, f: MemoryFigure, t: Target | null) => [
    name,
    f.heapBytesPerItem.toFixed(1),
    f.rssBytesPerItem.toFixed(1),
    (f.heapDeltaBytes / 1e6).toFixed(1),
    t === null ? "-" : verdictText(t),
  ];
  console.log(
    table(
      ["item", "heap+arrays B/item", "rss B/item", "heap+arrays delta MB", "target (heap+arrays)"],
      [
        row("SKU position", m.positions, tp),
        row("open hold (no request id)", m.holds, th),
        row("open hold (with request id)", m.holdsWithRequestId, tr),
        row("ended hold, remembered for the window", m.endedHolds, null),
      ],
    ),
  );
  return m;
}

// ---- main ------------------------------------------------------------------------------

async function main(): Promise<void> {
  const s = parseArgs(process.argv.slice(2));
  const m = machine();
  const started = performance.now();
  console.log("stockd engine benchmark");
  console.log(
    `cores ${m.cores} | ${m.cpuModel} | node ${m.node} | ${m.platform} | ` +
      `memory ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB | commit ${m.commit} | ${s.quick ? "quick" : "full"} run`,
  );
  if (m.loadAverageAtStart > m.cores / 2) {
    console.log(
      `note: load average ${m.loadAverageAtStart} on ${m.cores} cores: other work is running`,
    );
  }
  const targets: Target[] = [];
  const result: Record<string, unknown> = { machine: m, quick: s.quick, sections: s.only };
  const sections: Record<SectionName, () => unknown> = {
    partition: () => sectionPartition(s, targets),
    workers: () => sectionWorkers(s, m.cores, targets),
    journal: () => sectionJournal(s, m.cores),
    host: () => sectionHost(s, targets),
    replay: () => sectionReplay(s, targets),
    memory: () => sectionMemory(s, targets),
  };
  const sectionSeconds: Record<string, number> = {};
  for (const name of sectionNames) {
    if (!s.only.includes(name)) continue;
    const t0 = performance.now();
    result[name] = await sections[name]();
    sectionSeconds[name] = round((performance.now() - t0) / 1000, 1);
    console.log(`(section ${name}: ${sectionSeconds[name]} s)`);
  }
  result.sectionSeconds = sectionSeconds;
  heading("Targets");
  console.log(
    table(
      ["figure", "measured", "target"],
      targets.map((t) => [t.name, `${grouped(t.value)} ${t.unit}`, verdictText(t)]),
    ),
  );
  result.targets = targets;
  result.elapsedS = round((performance.now() - started) / 1000, 1);
  result.loadAverageAtEnd = round(loadavg()[0] ?? 0, 2);
  console.log(
    `\ntotal ${result.elapsedS} s | load average ${m.loadAverageAtStart} at start, ` +
      `${result.loadAverageAtEnd} at end (${m.cores} cores; the benchmark itself adds to it)`,
  );
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await main();
