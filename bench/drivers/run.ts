// Runs the stockd and echo drivers on their own, without the suite, and
// prints a table of RunResults (and, with --json, writes them).
//
//   node --import tsx bench/drivers/run.ts [--system LIST] [--scenario LIST]
//     [--clients 8,32,128] [--rate LIST] [--duration S] [--warmup S] [--quick]
//     [--durability fsync|relaxed] [--workers N] [--json PATH]

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  contentionClients,
  type Driver,
  type RunResult,
  type RunSpec,
  type ScenarioName,
  Skipped,
  scenarioNames,
} from "../lib/scenario.ts";
import { machine, machineLine } from "../lib/server_child.ts";
import { grouped, table } from "../lib/stats.ts";
import { stockdDrivers } from "./index.ts";

const help = `Usage: node --import tsx bench/drivers/run.ts [options]

  --system LIST        comma-separated; each a system ("stockd gRPC"), a system and its
                       tool ("stockd gRPC/h2load") or a tool ("wrk") [all]
  --scenario LIST      ${scenarioNames.join(", ")} [all]
  --clients LIST       clients per run (contention: always --contention-clients) [8,32,128]
  --contention-clients N  clients racing in the contention workload [${contentionClients}]
  --rate LIST          open loop: also run at these arrival rates (per second)
  --duration S         measured seconds per run [10; quick 3]
  --warmup S           warm-up seconds per run [2; quick 1]
  --quick              shorter runs
  --durability MODE    stockd's journal: fsync or relaxed [fsync]
  --workers N          stockd's worker threads [stockd's default]
  --json PATH          also write the results as JSON`;

interface Settings {
  systems: string[];
  scenarios: ScenarioName[];
  clients: number[];
  contentionClients: number;
  rates: number[];
  warmupMs: number;
  durationMs: number;
  quick: boolean;
  durability: "fsync" | "relaxed";
  workerCount: number | undefined;
  json: string | undefined;
}

function usage(message: string): never {
  console.error(`${message}\n\n${help}`);
  process.exit(2);
}

function list(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function numbers(flag: string, text: string | undefined, fallback: number[]): number[] {
  const items = list(text);
  if (items.length === 0) return fallback;
  return items.map((t) => {
    const n = Number(t);
    if (!(Number.isFinite(n) && n > 0)) usage(`${flag} takes positive numbers, not "${t}"`);
    return n;
  });
}

function settings(argv: string[]): Settings {
  let parsed: ReturnType<typeof parse>;
  const parse = () =>
    parseArgs({
      args: argv,
      options: {
        system: { type: "string" },
        scenario: { type: "string" },
        clients: { type: "string" },
        "contention-clients": { type: "string" },
        rate: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        quick: { type: "boolean", default: false },
        durability: { type: "string", default: "fsync" },
        workers: { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  try {
    parsed = parse();
  } catch (err) {
    usage((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) {
    console.log(help);
    process.exit(0);
  }
  const scenarios = list(v.scenario);
  for (const s of scenarios) {
    if (!(scenarioNames as readonly string[]).includes(s)) usage(`unknown scenario "${s}"`);
  }
  if (v.durability !== "fsync" && v.durability !== "relaxed")
    usage("--durability: fsync or relaxed");
  const whole = (flag: string, t: string) => {
    const n = Number(t);
    if (!Number.isSafeInteger(n) || n < 1) usage(`${flag} takes a whole number >= 1`);
    return n;
  };
  return {
    systems: list(v.system).map((s) => s.toLowerCase()),
    scenarios: scenarios.length > 0 ? (scenarios as ScenarioName[]) : [...scenarioNames],
    clients: numbers("--clients", v.clients, [8, 32, 128]).map((n) => Math.round(n)),
    contentionClients:
      v["contention-clients"] === undefined
        ? contentionClients
        : whole("--contention-clients", v["contention-clients"]),
    rates: numbers("--rate", v.rate, []),
    warmupMs: numbers("--warmup", v.warmup, [v.quick ? 1 : 2])[0]! * 1000,
    durationMs: numbers("--duration", v.duration, [v.quick ? 3 : 10])[0]! * 1000,
    quick: v.quick,
    durability: v.durability,
    workerCount: v.workers === undefined ? undefined : whole("--workers", v.workers),
    json: v.json,
  };
}

function selected(s: Settings, d: Driver): boolean {
  if (s.systems.length === 0) return true;
  const names = [d.system, `${d.system}/${d.tool}`, d.tool].map((n) => n.toLowerCase());
  return s.systems.some((f) => names.includes(f));
}

function specsOf(s: Settings, scenario: ScenarioName): RunSpec[] {
  const base = { scenario, warmupMs: s.warmupMs, durationMs: s.durationMs };
  if (scenario === "contention") return [{ ...base, clients: s.contentionClients }];
  const out: RunSpec[] = [];
  for (const clients of s.clients) {
    out.push({ ...base, clients });
    for (const ratePerS of s.rates) out.push({ ...base, clients, ratePerS });
  }
  return out;
}

const ms = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(2));

function label(d: Pick<Driver, "system" | "tool">): string {
  return `${d.system} (${d.tool})`;
}

function printTable(results: RunResult[]): void {
  console.log(
    table(
      [
        "system",
        "client",
        "scenario",
        "clients",
        "rate/s",
        "s",
        "ok",
        "refused",
        "errors",
        "ok/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "server us/ok",
        "consistent",
      ],
      results.map((r) => [
        label(r),
        r.client,
        r.scenario,
        String(r.clients),
        r.ratePerS === undefined ? "-" : grouped(r.ratePerS),
        r.seconds.toFixed(2),
        grouped(r.ok),
        grouped(r.refused),
        grouped(r.errors),
        grouped(r.okPerS),
        ms(r.latencyMs?.p50),
        ms(r.latencyMs?.p99),
        ms(r.latencyMs?.p999),
        r.serverCpuUsPerOk === undefined ? "-" : r.serverCpuUsPerOk.toFixed(1),
        r.consistent === null ? "-" : String(r.consistent),
      ]),
    ),
  );
}

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  console.log("stockd drivers");
  console.log(machineLine(machine()));
  console.log(
    `${s.quick ? "quick" : "full"} | ${s.warmupMs / 1000} s warm-up, ${s.durationMs / 1000} s measured | ` +
      `durability ${s.durability} | workers ${s.workerCount ?? "default"}`,
  );
  const { drivers, skipped } = await stockdDrivers({
    quick: s.quick,
    durability: s.durability,
    ...(s.workerCount === undefined ? {} : { workerCount: s.workerCount }),
  });
  for (const k of skipped) console.log(`skipped ${k.system}: ${k.reason}`);
  const chosen = drivers.filter((d) => selected(s, d));
  if (chosen.length === 0) usage(`no driver matches --system ${s.systems.join(",")}`);
  const results: RunResult[] = [];
  let failures = 0;
  try {
    for (const scenario of s.scenarios) {
      for (const spec of specsOf(s, scenario)) {
        for (const d of chosen) {
          const what = `${label(d)} ${scenario} ${spec.clients} clients${spec.ratePerS === undefined ? "" : ` at ${spec.ratePerS}/s`}`;
          const t0 = performance.now();
          try {
            const r = await d.run(spec);
            results.push(r);
            console.log(
              `${what}: ${grouped(r.okPerS)} ok/s, ok ${r.ok}, refused ${r.refused}, errors ${r.errors}, ` +
                `p99 ${ms(r.latencyMs?.p99)} ms, consistent ${r.consistent} ` +
                `(${((performance.now() - t0) / 1000).toFixed(1)} s)`,
            );
          } catch (err) {
            if (err instanceof Skipped) {
              console.log(`${what}: skipped: ${err.message}`);
            } else {
              failures++;
              console.log(`${what}: FAILED: ${(err as Error).stack ?? String(err)}`);
            }
          }
        }
      }
    }
  } finally {
    for (const d of drivers) await d.close();
  }
  console.log("");
  printTable(results);
  console.log("\nNotes:");
  for (const r of results) {
    const rate = r.ratePerS === undefined ? "" : ` at ${r.ratePerS}/s`;
    console.log(`  ${label(r)} ${r.scenario} ${r.clients}${rate}:`);
    for (const n of r.notes ?? []) console.log(`    ${n}`);
  }
  if (s.json !== undefined) {
    writeFileSync(s.json, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nresults in ${s.json}`);
  }
  if (failures > 0) {
    console.log(`\n${failures} run(s) failed`);
    process.exitCode = 1;
  }
}

await main();
