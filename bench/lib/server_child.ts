// Servers under load run as child processes of the gateway benchmarks:
// stockd (`node bin/stockd.js serve` on a temporary data directory) and the
// bare echo servers. Each announces its ports in a JSON log line with msg
// "listening"; the parent reads the child's CPU time from /proc, so that
// CPU per request is the server's alone, not the load generator's.
//
// Also here, because both gateway benchmarks share them: the machine's
// description and writing a run's results to bench/results.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  createWriteStream,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { round } from "./stats.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** How long a child may take to print its "listening" line: recovery of an
 * empty data directory takes well under a second. */
const startTimeoutMs = 60_000;
/** How long a child may take to stop after SIGTERM before it is killed. */
const stopTimeoutMs = 15_000;
/** Log lines kept per child, shown when it fails. */
const logTailCountMax = 40;

export interface ServerChild {
  name: string;
  pid: number;
  /** null: the child serves no such transport. */
  httpPort: number | null;
  grpcPort: number | null;
  /** The last lines the child printed, for error messages. */
  logTail(): string[];
  /** SIGTERM, wait for the exit (SIGKILL after a while), remove temp files. */
  stop(): Promise<void>;
}

interface ChildSpec {
  name: string;
  args: string[];
  env?: Record<string, string>;
  /** Removed after the child exits. */
  tempDir?: string;
  /** The child is started once it logged this msg (after "listening"). */
  readyMsg?: string;
}

const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

/** A crashed or interrupted benchmark leaves no server and no data
 * directory behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of running) child.kill("SIGKILL");
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => process.exit(130));
  }
}

export async function startChild(spec: ChildSpec): Promise<ServerChild> {
  installExitHook();
  if (spec.tempDir !== undefined) tempDirs.add(spec.tempDir);
  const child = spawn(process.execPath, spec.args, {
    cwd: repoRoot,
    env: { ...process.env, ...spec.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  // STOCKD_BENCH_LOG_DIR: every line each child prints, to DIR/NAME-PID.log
  // (with STOCKD_BENCH_NODE_ARGS="--trace-gc", the server's pauses).
  const logDir = process.env.STOCKD_BENCH_LOG_DIR;
  if (logDir !== undefined && logDir !== "") {
    mkdirSync(logDir, { recursive: true });
    const file = createWriteStream(join(logDir, `${spec.name}-${child.pid}.log`));
    child.stdout!.pipe(file, { end: false });
    child.stderr!.pipe(file, { end: false });
    child.once("exit", () => file.end());
  }
  const tail: string[] = [];
  const remember = (line: string) => {
    tail.push(line);
    if (tail.length > logTailCountMax) tail.shift();
  };
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve(code ?? (signal === null ? null : -1));
    });
  });
  const listening = await new Promise<{ httpPort: number | null; grpcPort: number | null }>(
    (resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`${spec.name}: not listening and ready in ${startTimeoutMs} ms`));
      }, startTimeoutMs);
      let pending = "";
      let ports: { httpPort: number | null; grpcPort: number | null } | null = null;
      // The child's stdout is always read to the end: a full pipe would
      // block its logger and, with it, the server.
      child.stdout!.on("data", (chunk: Buffer) => {
        pending += chunk.toString();
        let nl = pending.indexOf("\n");
        while (nl >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          remember(line);
          ports ??= listeningPorts(line);
          if (ports !== null && (spec.readyMsg === undefined || logMsg(line) === spec.readyMsg)) {
            clearTimeout(timer);
            resolve(ports);
          }
          nl = pending.indexOf("\n");
        }
      });
      child.stderr!.on("data", (chunk: Buffer) => {
        for (const line of chunk.toString().split("\n")) if (line !== "") remember(line);
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(
          new Error(`${spec.name} exited (${code}) before listening:\n  ${tail.join("\n  ")}`),
        );
      });
    },
  );
  const pid = child.pid!;
  let stopped: Promise<void> | null = null;
  return {
    name: spec.name,
    pid,
    ...listening,
    logTail: () => [...tail],
    stop: () => {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs);
          await exited;
          clearTimeout(timer);
        }
        if (spec.tempDir !== undefined) {
          await rm(spec.tempDir, { recursive: true, force: true });
          tempDirs.delete(spec.tempDir);
        }
      })();
      return stopped;
    },
  };
}

function logRecord(line: string): Record<string, unknown> | null {
  if (!line.startsWith("{")) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function logMsg(line: string): unknown {
  return logRecord(line)?.msg;
}

function listeningPorts(line: string): { httpPort: number | null; grpcPort: number | null } | null {
  const record = line.includes('"listening"') ? logRecord(line) : null;
  if (record === null || record.msg !== "listening") return null;
  const port = (v: unknown) => (typeof v === "number" && v > 0 ? v : null);
  return { httpPort: port(record.httpPort), grpcPort: port(record.grpcPort) };
}

export interface StockdOptions {
  durability: "fsync" | "relaxed";
  /** Default hold duration, as the CLI takes it ("2s"). */
  holdDuration: string;
  /** Worker threads; undefined: stockd's default (one per core). */
  workerCount: number | undefined;
  jwtSecret: string;
}

/** The Node flags `npm start` gives stockd (package.json): the benchmarks
 * measure the server as it is run. */
const startNodeArgs = ["--max-semi-space-size=64"];

/** Node flags for every stockd child of the benchmarks: `npm start`'s, then
 * STOCKD_BENCH_NODE_ARGS, such as `--cpu-prof --cpu-prof-dir=DIR` to profile
 * the server under a benchmark's load, or `--trace-gc` (Node refuses them in
 * NODE_OPTIONS); a flag given there wins over `npm start`'s. */
export function serverNodeArgs(): string[] {
  const value = process.env.STOCKD_BENCH_NODE_ARGS ?? "";
  return [...startNodeArgs, ...value.split(" ").filter((arg) => arg !== "")];
}

/** `node bin/stockd.js serve` on a fresh temporary data directory, both
 * transports on free ports of the loopback address; started once it logged
 * "ready" (it listens, and answers "not ready", while it recovers). */
export async function startStockd(o: StockdOptions): Promise<ServerChild> {
  const dataDir = await mkdtemp(join(tmpdir(), "stockd-bench-gateway-"));
  const args = [
    ...serverNodeArgs(),
    "bin/stockd.js",
    "serve",
    "--data",
    dataDir,
    "--http-port",
    "0",
    "--grpc-port",
    "0",
    "--host",
    "127.0.0.1",
    "--durability",
    o.durability,
    "--hold-duration",
    o.holdDuration,
  ];
  if (o.workerCount !== undefined) args.push("--workers", String(o.workerCount));
  try {
    return await startChild({
      name: "stockd",
      args,
      env: { STOCKD_JWT_SECRET: o.jwtSecret },
      tempDir: dataDir,
      readyMsg: "ready",
    });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** One of the bare echo servers (bench/lib/echo_http.ts, echo_grpc.ts). */
export function startEcho(transport: "http" | "grpc"): Promise<ServerChild> {
  return startChild({
    name: `echo-${transport}`,
    args: ["--import", "tsx", `bench/lib/echo_${transport}.ts`],
  });
}

/** The HTTP benchmark's JSON floor (bench/lib/floor_http.ts). */
export function startFloor(): Promise<ServerChild> {
  return startChild({ name: "floor-http", args: ["--import", "tsx", "bench/lib/floor_http.ts"] });
}

// ---- CPU time of a process ----------------------------------------------------

let clockTicksPerS: number | null = null;

function ticksPerS(): number {
  if (clockTicksPerS === null) {
    try {
      clockTicksPerS = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
    } catch {
      clockTicksPerS = 100;
    }
  }
  return clockTicksPerS;
}

/** utime + stime of a process and all its threads, from /proc/PID/stat (in
 * clock ticks, usually 10 ms: measure over seconds, not milliseconds). */
export function processCpuUs(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces; the
  // fields after it start with the state (field 3).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return ((utime + stime) * 1e6) / ticksPerS();
}

/** CPU time every process on the machine spent busy so far (all cores; idle
 * and I/O wait left out), from /proc/stat; null where it is not available.
 * Minus the server's and the load generator's, it is what else ran: other
 * work on a shared machine lowers every figure. */
export function machineBusyUs(): number | null {
  let stat: string;
  try {
    stat = readFileSync("/proc/stat", "utf8");
  } catch {
    return null;
  }
  // cpu user nice system idle iowait irq softirq steal ...
  const fields = stat.slice(0, stat.indexOf("\n")).split(/\s+/).slice(1).map(Number);
  const busy = fields.reduce((sum, v, i) => (i === 3 || i === 4 || i > 7 ? sum : sum + v), 0);
  return Number.isFinite(busy) ? (busy * 1e6) / ticksPerS() : null;
}

/** CPU time of this process (every thread, load generator workers included). */
export function ownCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** CPU spent over a measured window, in microseconds. */
export interface CpuSpent {
  /** The server child, every thread; null without /proc. */
  serverUs: number | null;
  /** This process: the load generator (and an idle main thread). */
  loadgenUs: number;
  /** Everything else on the machine (other work, the idle echo); null
   * without /proc. */
  otherUs: number | null;
}

/** Reads the counters when measuring starts and when it ends. */
export function cpuMeter(server: ServerChild): {
  start(): void;
  stop(): void;
  spent(): CpuSpent;
} {
  const meter = multiCpuMeter({ server: server.pid });
  return {
    start: () => meter.start(),
    stop: () => meter.stop(),
    spent: () => {
      const w = meter.window();
      return { serverUs: w.processUs.server ?? null, loadgenUs: w.loadgenUs, otherUs: w.otherUs };
    },
  };
}

/** CPU over a window, in microseconds, per named process; null without /proc. */
export interface CpuWindow {
  /** Each process's CPU time in the window. */
  processUs: Record<string, number | null>;
  /** This process (the load generator). */
  loadgenUs: number;
  /** The rest of the machine: other work. */
  otherUs: number | null;
  elapsedMs: number;
}

/** Reads the CPU counters of `pids` (name -> pid), this process's and the
 * machine's at start() and stop(). */
export function multiCpuMeter(pids: Record<string, number>): {
  start(): void;
  stop(): void;
  window(): CpuWindow;
} {
  const read = () => ({
    at: performance.now(),
    procs: Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCpuUs(pid)])),
    own: ownCpuUs(),
    machine: machineBusyUs(),
  });
  let a = read();
  let b = a;
  return {
    start: () => {
      a = read();
    },
    stop: () => {
      b = read();
    },
    window: () => {
      const processUs: Record<string, number | null> = {};
      let known = 0;
      let missing = false;
      for (const k of Object.keys(pids)) {
        const x = a.procs[k];
        const y = b.procs[k];
        const us = x === null || x === undefined || y === null || y === undefined ? null : y - x;
        processUs[k] = us;
        if (us === null) missing = true;
        else known += us;
      }
      const loadgenUs = b.own - a.own;
      const machineUs = a.machine === null || b.machine === null ? null : b.machine - a.machine;
      return {
        processUs,
        loadgenUs,
        otherUs: machineUs === null || missing ? null : Math.max(0, machineUs - known - loadgenUs),
        elapsedMs: round(b.at - a.at, 1),
      };
    },
  };
}

/** CPU per operation and in cores over the window. */
export interface CpuFigures {
  serverUsPerOp: number | null;
  serverCores: number | null;
  loadgenUsPerOp: number | null;
  loadgenCores: number;
  otherCores: number | null;
}

export function cpuFigures(spent: CpuSpent, ops: number, elapsedMs: number): CpuFigures {
  const perOp = (us: number | null) => (us === null || ops <= 0 ? null : round(us / ops, 1));
  const cores = (us: number) => (elapsedMs <= 0 ? 0 : round(us / 1000 / elapsedMs, 2));
  return {
    serverUsPerOp: perOp(spent.serverUs),
    serverCores: spent.serverUs === null ? null : cores(spent.serverUs),
    loadgenUsPerOp: perOp(spent.loadgenUs),
    loadgenCores: cores(spent.loadgenUs),
    otherCores: spent.otherUs === null ? null : cores(spent.otherUs),
  };
}

/** A load generator on one thread near a whole core is the limit, not the
 * server; other work above this many cores makes the figures suspect. */
const loadgenCoresSaturated = 0.85;
export const otherCoresNoticeable = 0.25;

/** Warnings about a run's CPU figures, for the report. */
export function cpuNotes(what: string, c: CpuFigures): string[] {
  const notes: string[] = [];
  if (c.loadgenCores >= loadgenCoresSaturated) {
    notes.push(
      `${what}: the load generator used ${c.loadgenCores} cores (one thread): it, not the server, may be the limit`,
    );
  }
  if (c.otherCores !== null && c.otherCores >= otherCoresNoticeable) {
    notes.push(`${what}: other work on the machine took ${c.otherCores} cores meanwhile`);
  }
  return notes;
}

// ---- the run's context and results ----------------------------------------------

export interface Machine {
  cores: number;
  cpuModel: string;
  node: string;
  platform: string;
  memoryBytes: number;
  /** 1-minute load average when the run started. */
  loadAverageAtStart: number;
  commit: string;
}

export function machine(): Machine {
  let commit = "unknown";
  const git = (args: string[]) =>
    execFileSync("git", args, { cwd: repoRoot, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  try {
    commit = git(["rev-parse", "--short", "HEAD"]);
    // No optional locks: reading the status must not write the index.
    if (git(["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]) !== "") {
      commit += "+dirty";
    }
  } catch {
    // Not a git checkout: the figures stand without it.
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

export function machineLine(m: Machine): string {
  return (
    `cores ${m.cores} | ${m.cpuModel} | node ${m.node} | ${m.platform} | ` +
    `memory ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB | commit ${m.commit} | ` +
    `load average ${m.loadAverageAtStart}`
  );
}

/** Writes bench/results/<name>-<timestamp>.json (through a .tmp file, so a
 * half-written result never has the final name); returns its path. */
export function writeResults(name: string, result: unknown): string {
  const dir = join(repoRoot, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const path = join(dir, `${name}-${stamp}.json`);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
  return path;
}
