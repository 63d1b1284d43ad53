// The peer systems on their own, without stockd: runs each driver of
// bench/peers/ on each workload and prints a table of RunResults, then each
// run's notes (durability, pool caps, what was measured, the no-oversell
// check).
//
//   node --import tsx bench/peers/run.ts [--only postgres,pgbench,redis]
//     [--scenario hot,uniform,checkout,contention] [--clients 8,32,128]
//     [--duration S] [--warmup S] [--quick] [--json]
//
// Servers: STOCKD_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres),
// STOCKD_BENCH_REDIS (default redis://127.0.0.1:6379), STOCKD_BENCH_PGBENCH
// (default pgbench on PATH). A peer that is not there is skipped.

import { parseArgs } from "node:util";
import {
  contentionClients,
  type Driver,
  type RunResult,
  type ScenarioName,
  Skipped,
  scenarioNames,
} from "../lib/scenario.ts";
import { machine, machineLine } from "../lib/server_child.ts";
import { grouped, table } from "../lib/stats.ts";
import { type PeerKind, peerDrivers, peerKinds } from "./index.ts";

const help = `Usage: node --import tsx bench/peers/run.ts [options]

  --only KINDS        comma-separated: ${peerKinds.join(", ")} [all]
  --scenario NAMES    comma-separated: ${scenarioNames.join(", ")} [all]
  --clients LIST      clients per run, comma-separated [8,32,128]
                      (contention always races ${contentionClients} clients)
  --duration S        measured seconds per run [10; quick 3]
  --warmup S          warm-up seconds per run, not measured [2; quick 1]
  --quick             shorter runs
  --json              print the results as JSON after the table`;

/** Bounds on what the command line may ask for. */
const clientsMax = 10_000;
const durationSMax = 3_600;

function list<T extends string>(value: string | undefined, all: readonly T[], what: string): T[] {
  if (value === undefined) return [...all];
  const items = value.split(",").map((s) => s.trim());
  for (const item of items) {
    if (!all.includes(item as T)) throw new Error(`unknown ${what} "${item}" (${all.join(", ")})`);
  }
  return items as T[];
}

function seconds(value: string | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  const s = Number(value);
  if (!(s >= 0 && s <= durationSMax)) throw new Error(`--${what} wants 0..${durationSMax} seconds`);
  return s;
}

function options() {
  const { values } = parseArgs({
    options: {
      only: { type: "string" },
      scenario: { type: "string" },
      clients: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      quick: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  const clients = (values.clients ?? "8,32,128").split(",").map(Number);
  for (const c of clients) {
    if (!(Number.isInteger(c) && c >= 1 && c <= clientsMax)) {
      throw new Error(`--clients wants integers in 1..${clientsMax}`);
    }
  }
  return {
    help: values.help,
    json: values.json,
    kinds: list<PeerKind>(values.only, peerKinds, "peer"),
    scenarios: list<ScenarioName>(values.scenario, scenarioNames, "scenario"),
    clients,
    durationMs: seconds(values.duration, values.quick ? 3 : 10, "duration") * 1000,
    warmupMs: seconds(values.warmup, values.quick ? 1 : 2, "warmup") * 1000,
  };
}

/** Every run of one driver; stops at the first Skipped (it says why the
 * whole peer is missing). */
async function runDriver(
  d: Driver,
  o: ReturnType<typeof options>,
  results: RunResult[],
): Promise<void> {
  for (const scenario of o.scenarios) {
    const clientCounts = scenario === "contention" ? [contentionClients] : o.clients;
    for (const clients of clientCounts) {
      const label = `${d.system} ${scenario} x${clients}`;
      process.stderr.write(`${label} ...\n`);
      try {
        const r = await d.run({
          scenario,
          clients,
          warmupMs: o.warmupMs,
          durationMs: o.durationMs,
        });
        results.push(r);
        process.stderr.write(
          `${label}: ${grouped(r.okPerS)} ok/s, consistent ${String(r.consistent)}\n`,
        );
      } catch (err) {
        if (err instanceof Skipped) {
          process.stderr.write(`skipped ${d.system}: ${err.message}\n`);
          return;
        }
        process.stderr.write(`${label} failed: ${(err as Error).stack ?? String(err)}\n`);
      }
    }
  }
}

function cell(x: number | undefined): string {
  return x === undefined ? "-" : String(x);
}

function print(results: RunResult[]): void {
  const headers = [
    "#",
    "system",
    "tool",
    "scenario",
    "clients",
    "s",
    "ok",
    "refused",
    "errors",
    "ok/s",
    "p50 ms",
    "p99 ms",
    "p999 ms",
    "cpu us/ok",
    "consistent",
  ];
  const rows = results.map((r, i) => [
    String(i + 1),
    r.system,
    r.tool,
    r.scenario,
    String(r.clients),
    String(r.seconds),
    grouped(r.ok),
    grouped(r.refused),
    grouped(r.errors),
    grouped(r.okPerS),
    cell(r.latencyMs?.p50),
    cell(r.latencyMs?.p99),
    cell(r.latencyMs?.p999),
    cell(r.serverCpuUsPerOk),
    String(r.consistent),
  ]);
  console.log(table(headers, rows));
  results.forEach((r, i) => {
    console.log(`\n${i + 1}. ${r.system} ${r.scenario} x${r.clients}`);
    for (const note of r.notes ?? []) console.log(`   - ${note}`);
  });
}

async function main(): Promise<void> {
  const o = options();
  if (o.help) {
    console.log(help);
    return;
  }
  console.log(machineLine(machine()));
  const results: RunResult[] = [];
  for (const d of peerDrivers(o.kinds)) {
    try {
      await runDriver(d, o, results);
    } finally {
      await d.close();
    }
  }
  console.log("");
  print(results);
  if (o.json) console.log(`\n${JSON.stringify(results, null, 2)}`);
}

await main();
