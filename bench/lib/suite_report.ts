// The comparison suite's report: markdown a person reads, from one results
// file (bench/lib/suite_results.ts). A machine line; what each scenario
// measured; every ratio (stockd against PostgreSQL, Redis and the bare
// transport, Node clients and C clients apart); the targets, met or missed,
// with the figures behind each; scaling, latency at fixed rates, memory;
// what was left out and why. Charts are separate SVG files it links to.

import { contentionUnits, type RunResult, type ScenarioName } from "./scenario.ts";
import { scenarioTitle } from "./suite_charts.ts";
import {
  driverKey,
  type LeftOut,
  type SuiteResults,
  sortRuns,
  throughputOf,
} from "./suite_results.ts";

// ---- targets (from the issue) ------------------------------------------------------

/** Hot SKU, durable: stockd's batch API against PostgreSQL, commit fsynced. */
const batchOverPostgresMin = 50;
/** Hot SKU and uniform, durable: single gRPC calls (h2load) against pgbench. */
const unaryOverPostgresMin = 2;
/** Single-line reserve as a share of the bare transport's echo. */
const bareShareMin = 0.8;
/** p99 at half the maximum rate. */
const halfRateP99MsMax = 10;

// ---- formatting ---------------------------------------------------------------------

function rate(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function ms(x: number | undefined): string {
  if (x === undefined) return "–";
  if (x < 1) return x.toFixed(3);
  if (x < 10) return x.toFixed(2);
  if (x < 100) return x.toFixed(1);
  return x.toFixed(0);
}

function times(x: number): string {
  if (!Number.isFinite(x)) return "–";
  if (x >= 10) return `${x.toFixed(0)}×`;
  if (x >= 1) return `${x.toFixed(1)}×`;
  return `${x.toFixed(2)}×`;
}

function consistentText(r: RunResult): string {
  if (r.consistent === null) return "not checked";
  return r.consistent ? "yes" : "**NO**";
}

/** A markdown table; `align` has one letter per column, "l" or "r". */
function mdTable(headers: string[], rows: string[][], align: string): string {
  const esc = (cell: string) => cell.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const rule = headers.map((_, i) => (align[i] === "r" ? "---:" : "---"));
  return [headers, rule, ...rows.map((r) => r.map(esc))]
    .map((cells) => `| ${cells.join(" | ")} |`)
    .join("\n");
}

// ---- picking runs ---------------------------------------------------------------------

type Kind = "node" | "c";

const isStockd = (system: string) => /^stockd\b/i.test(system);
const isBare = (system: string) => /^echo\b/i.test(system);
const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

interface RunQuery {
  scenario: ScenarioName;
  clients?: number;
  kind?: Kind;
  system: (system: string) => boolean;
}

/** The best (most successes/s) closed-loop run that matches. */
function best(runs: RunResult[], q: RunQuery): RunResult | undefined {
  let found: RunResult | undefined;
  for (const r of runs) {
    if (r.scenario !== q.scenario || r.ratePerS !== undefined || !q.system(r.system)) continue;
    if (q.clients !== undefined && r.clients !== q.clients) continue;
    if (q.kind !== undefined && r.client !== q.kind) continue;
    if (found === undefined || throughputOf(r) > throughputOf(found)) found = r;
  }
  return found;
}

/** A bare echo does the same work whatever the scenario: where it was not
 * run on this single-line scenario (the quick run measures it on the hot
 * SKU only), its run on the other one stands in, with the same clients. */
function bestEcho(runs: RunResult[], q: RunQuery): RunResult | undefined {
  const own = best(runs, q);
  if (own !== undefined || (q.scenario !== "hot" && q.scenario !== "uniform")) return own;
  return best(runs, { ...q, scenario: q.scenario === "hot" ? "uniform" : "hot" });
}

interface Peer {
  label: string;
  matches: (system: string) => boolean;
}

const peers: Peer[] = [
  { label: "postgres sync=on", matches: (s) => /postgres/i.test(s) && /sync=on/i.test(s) },
  { label: "postgres sync=off", matches: (s) => /postgres/i.test(s) && /sync=off/i.test(s) },
  { label: "redis", matches: (s) => /^redis\b/i.test(s) },
];

/** The bare transport stockd's system runs on: "stockd gRPC batch" pairs
 * with "echo gRPC batch" if there is one, else with "echo gRPC". */
function bareSystemFor(system: string, systems: Set<string>): string | undefined {
  const words = system.replace(/^stockd\b/i, "echo").split(" ");
  for (let n = words.length; n >= 2; n--) {
    const name = words.slice(0, n).join(" ");
    for (const s of systems) if (same(s, name)) return s;
  }
  return undefined;
}

function clientCounts(runs: RunResult[], scenario: ScenarioName): number[] {
  return [
    ...new Set(
      runs.filter((r) => r.scenario === scenario && r.ratePerS === undefined).map((r) => r.clients),
    ),
  ].sort((a, b) => a - b);
}

// ---- sections ----------------------------------------------------------------------------

function header(results: SuiteResults, resultsPath: string): string[] {
  const m = results.machine;
  const s = results.settings;
  const lines = [
    `# stockd comparison benchmark${s.selfTest ? " — SELF-TEST WITH FAKE DRIVERS, NOT FIGURES" : ""}`,
    "",
    `**Machine:** ${m.cores} cores · ${m.cpuModel} · Node ${m.node} · ${m.platform} · ` +
      `${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB · commit \`${m.commit}\` · ` +
      `load average ${m.loadAverageAtStart} at start, ${results.loadAverageAtEnd} at end`,
    "",
    `**Run:** ${results.startedAt} · ${s.quick ? "quick" : "full"} · stockd durability **${s.durability}** · ` +
      `${s.warmupMs / 1000} s warm-up, ${s.durationMs / 1000} s measured · clients ${s.clients.join(", ")} ` +
      `(contention: ${s.contentionClients}) · scenarios ${s.scenarios.join(", ")} · sections ${s.sections.join(", ")}` +
      (s.systemFilters.length > 0 ? ` · systems matching ${s.systemFilters.join(", ")}` : "") +
      ` · took ${results.elapsedS} s`,
    "",
    `Results: \`${resultsPath}\` — regenerate this report with ` +
      `\`node --import tsx bench/report.ts ${resultsPath}\`.`,
    "",
    "Run it: `npm run bench` (every scenario, 8/32/128 clients, 3 s warm-up and 10 s measured " +
      "per run), `npm run bench -- --quick` (under two minutes: 32 clients, fewer systems), one " +
      "scenario or system on its own with `-- --only hot --sections compare --systems stockd`; " +
      "`npm run bench -- --help` lists the options.",
    "",
    "**Peers.** PostgreSQL and Redis are reached where `STOCKD_BENCH_PG` (a PostgreSQL " +
      "connection string) and `STOCKD_BENCH_REDIS` (a Redis URL) point; set them to measure " +
      "peers on other hosts or other settings (see bench/peers/ for the defaults). " +
      "PostgreSQL is measured with `synchronous_commit=on` (durable: the commit waits for the " +
      "WAL flush) and `off` (not durable). **A Redis without `appendonly yes` and " +
      "`appendfsync always` is not durable**: it acknowledges a reservation it may lose in a " +
      "crash, so it is not a like-for-like peer for a durable stockd (the Redis driver's notes " +
      "below say how the measured one was configured).",
    "",
    "Every figure counts successes from the answers, never transport-level success alone; " +
      "ok/s for the batch API counts reservations, not calls. Node clients and C clients " +
      "(h2load, wrk, pgbench) are reported apart: the fair comparison is C client against C " +
      "client, because a Node load generator on a small machine is often the limit itself. " +
      "The load generator shares the machine with the server.",
  ];
  const asMeasured = peersAsMeasured(results);
  if (asMeasured.length > 0) {
    lines.push("", "The peers as measured (from their drivers):", "", ...asMeasured);
  }
  if (m.loadAverageAtStart > m.cores / 2) {
    lines.push(
      "",
      `> Load average ${m.loadAverageAtStart} on ${m.cores} cores at the start: other work was running and lowers every figure.`,
    );
  }
  return lines;
}

/** Each peer driver's own word on its durability (the notes that say
 * "durable"), once per driver. */
function peersAsMeasured(results: SuiteResults): string[] {
  const seen = new Map<string, Set<string>>();
  for (const r of sortRuns(results.runs)) {
    if (isStockd(r.system) || isBare(r.system)) continue;
    for (const n of r.notes ?? []) {
      if (!/durab/i.test(n)) continue;
      const key = driverKey(r);
      const set = seen.get(key) ?? new Set<string>();
      set.add(n);
      seen.set(key, set);
    }
  }
  return [...seen].map(([key, notes]) => `- ${key}: ${[...notes].join("; ")}`);
}

function scenarioTable(runs: RunResult[]): string {
  return mdTable(
    [
      "system",
      "client",
      "tool",
      "clients",
      "ok/s",
      "ok",
      "refused",
      "errors",
      "p50 ms",
      "p99 ms",
      "p999 ms",
      "server CPU µs/ok",
      "consistent",
    ],
    sortRuns(runs).map((r) => [
      r.system,
      r.client === "c" ? "C" : "Node",
      r.tool,
      String(r.clients),
      rate(r.okPerS),
      rate(r.ok),
      rate(r.refused),
      rate(r.errors),
      ms(r.latencyMs?.p50),
      ms(r.latencyMs?.p99),
      ms(r.latencyMs?.p999),
      r.serverCpuUsPerOk === undefined ? "–" : r.serverCpuUsPerOk.toFixed(1),
      consistentText(r),
    ]),
    "lllrrrrrrrrrl",
  );
}

function contentionTable(runs: RunResult[]): string {
  return mdTable(
    [
      "system",
      "client",
      "tool",
      "clients",
      "ok",
      `exactly ${contentionUnits}`,
      "refused",
      "errors",
      "seconds",
      "answers/s",
      "successes/s",
      "driver's ok/s",
      "p99 ms",
      "consistent",
    ],
    sortRuns(runs).map((r) => [
      r.system,
      r.client === "c" ? "C" : "Node",
      r.tool,
      String(r.clients),
      rate(r.ok),
      r.ok === contentionUnits ? "yes" : "**NO**",
      rate(r.refused),
      rate(r.errors),
      r.seconds.toFixed(2),
      rate(throughputOf(r)),
      r.seconds > 0 ? rate(r.ok / r.seconds) : "–",
      rate(r.okPerS),
      ms(r.latencyMs?.p99),
      consistentText(r),
    ]),
    "lllrrlrrrrrrrl",
  );
}

function scenarioSections(results: SuiteResults, chartDir: string, chartFiles: Set<string>) {
  const lines: string[] = [];
  const chart = (file: string, alt: string) => {
    if (chartFiles.has(file)) lines.push("", `![${alt}](${chartDir}/${file})`);
  };
  for (const scenario of results.settings.scenarios) {
    const runs = results.runs.filter((r) => r.scenario === scenario && r.ratePerS === undefined);
    lines.push("", `## Scenario: ${scenarioTitle(scenario)}`, "", scenarioBlurb(scenario, results));
    if (runs.length === 0) {
      lines.push("", "_No system was measured on this scenario (see left out, below)._");
      continue;
    }
    lines.push("", scenario === "contention" ? contentionTable(runs) : scenarioTable(runs));
    if (scenario === "contention") chart("contention.svg", "contention throughput");
    else {
      chart(`throughput-${scenario}.svg`, `${scenario}: throughput against clients`);
      chart(`latency-saturation-${scenario}.svg`, `${scenario}: latency at saturation`);
    }
  }
  return lines;
}

function scenarioBlurb(scenario: ScenarioName, results: SuiteResults): string {
  switch (scenario) {
    case "hot":
      return "Every client reserves 1 unit of one product in one warehouse, closed loop.";
    case "uniform":
      return "1 unit of a random one of 10,000 positions (100 products × 100 warehouses), closed loop.";
    case "checkout":
      return "3 random lines reserved atomically and a pending order created; half paid, half left to expire.";
    case "contention":
      return (
        `${results.settings.contentionClients} clients race for ${contentionUnits} units of one ` +
        `position, one unit each, until none are left: exactly ${contentionUnits} must succeed. ` +
        "Throughput here (and in the ratios) is answers per second while the race lasted, " +
        "successes and refusals alike, computed the same way for every system."
      );
  }
}

function ratioCell(mine: RunResult, other: RunResult | undefined): string {
  if (other === undefined || throughputOf(other) <= 0) return "–";
  return `${times(throughputOf(mine) / throughputOf(other))} (${rate(throughputOf(other))})`;
}

function ratioTable(results: SuiteResults, kind: Kind): string | null {
  const runs = results.runs.filter((r) => r.client === kind && r.ratePerS === undefined);
  const systems = new Set(results.runs.filter((r) => r.client === kind).map((r) => r.system));
  const rows: string[][] = [];
  let batchAgainstUnary = false;
  for (const scenario of results.settings.scenarios) {
    for (const clients of clientCounts(runs, scenario)) {
      const here = runs.filter((r) => r.scenario === scenario && r.clients === clients);
      for (const mine of sortRuns(here.filter((r) => isStockd(r.system)))) {
        const bare = bareSystemFor(mine.system, systems);
        const bareRun =
          bare === undefined
            ? undefined
            : bestEcho(runs, { scenario, clients, system: (s) => same(s, bare), kind });
        if (bare !== undefined && !same(bare, mine.system.replace(/^stockd/i, "echo"))) {
          batchAgainstUnary = true;
        }
        rows.push([
          scenario,
          String(clients),
          `${mine.system} (${mine.tool})`,
          rate(throughputOf(mine)),
          ...peers.map((p) => ratioCell(mine, best(here, { scenario, system: p.matches, kind }))),
          bareRun === undefined
            ? "–"
            : `${ratioCell(mine, bareRun)} ${bareRun.system}` +
              (bareRun.scenario === scenario ? "" : ` (on ${bareRun.scenario})`),
        ]);
      }
    }
  }
  if (rows.length === 0) return null;
  const table = mdTable(
    [
      "scenario",
      "clients",
      "stockd (tool)",
      "ok/s",
      ...peers.map((p) => `÷ ${p.label} (its ok/s)`),
      "÷ bare transport (its ok/s)",
    ],
    rows,
    "lrlrrrrr",
  );
  return batchAgainstUnary
    ? `${table}\n\nA system without a bare server of its own (the batch API) is divided by the echo of its transport: reservations against echo calls.`
    : table;
}

function ratioSection(results: SuiteResults): string[] {
  const lines = [
    "",
    "## Ratios",
    "",
    "stockd's successes/s divided by each peer's at the same scenario and number of clients, " +
      "with the peer's figure in brackets; each peer's best tool of the same client kind. " +
      "For contention the figure is answers/s (see its section).",
  ];
  for (const [kind, title] of [
    ["node", "Node clients against Node clients"],
    ["c", "C clients against C clients (the fair comparison)"],
  ] as const) {
    const t = ratioTable(results, kind);
    lines.push("", `### ${title}`, "", t ?? "_No runs of this kind._");
  }
  return lines;
}

// ---- targets ------------------------------------------------------------------------------

export interface TargetRow {
  target: string;
  figures: string;
  measured: string;
  bound: string;
  verdict: "met" | "**MISSED**" | "not measured";
}

/** stockd's run and the peer's at one number of clients. */
interface Pair {
  clients: number;
  mine: RunResult | undefined;
  other: RunResult | undefined;
}

/** One target over every number of clients: met only where every measured
 * pair meets it; the worst ratio is the one shown. */
function ratioTarget(
  name: string,
  pairs: Pair[],
  min: number,
  unmeasurable: string | null,
  otherLabel: string,
  asShare = false,
): TargetRow {
  const bound = asShare ? `≥ ${min * 100}%` : `≥ ${min}×`;
  const show = (x: number) => (asShare ? `${(x * 100).toFixed(0)}%` : times(x));
  const parts: string[] = [];
  let worst = Number.POSITIVE_INFINITY;
  for (const { clients, mine, other } of pairs) {
    if (mine === undefined || other === undefined || throughputOf(other) <= 0) {
      const missing = mine === undefined ? "stockd" : otherLabel;
      parts.push(`${clients} cl.: ${missing} not measured`);
      continue;
    }
    const x = throughputOf(mine) / throughputOf(other);
    worst = Math.min(worst, x);
    const elsewhere = other.scenario === mine.scenario ? "" : `, on ${other.scenario}`;
    parts.push(
      `${clients} cl.: ${show(x)} = ${rate(throughputOf(mine))} (${mine.tool}) ÷ ${rate(throughputOf(other))} (${other.tool}${elsewhere})`,
    );
  }
  if (unmeasurable !== null || !Number.isFinite(worst)) {
    return {
      target: name,
      figures: unmeasurable ?? parts.join("; "),
      measured: "–",
      bound,
      verdict: "not measured",
    };
  }
  return {
    target: name,
    figures: parts.join("; "),
    measured: pairs.length > 1 ? `${show(worst)} (worst)` : show(worst),
    bound,
    verdict: worst >= min ? "met" : "**MISSED**",
  };
}

function throughputTargets(results: SuiteResults): TargetRow[] {
  const runs = results.runs;
  const rows: TargetRow[] = [];
  const relaxed =
    results.settings.durability === "fsync"
      ? null
      : "not applicable: stockd ran with relaxed durability (run with --durability fsync)";
  const pgOn = (s: string) => peers[0]!.matches(s);
  const pairs = (
    scenario: ScenarioName,
    mine: Omit<RunQuery, "scenario" | "clients">,
    other: Omit<RunQuery, "scenario" | "clients">,
    pickOther = best,
  ): Pair[] => {
    const counts = clientCounts(runs, scenario);
    return (counts.length > 0 ? counts : results.settings.clients).map((clients) => ({
      clients,
      mine: best(runs, { ...mine, scenario, clients }),
      other: pickOther(runs, { ...other, scenario, clients }),
    }));
  };
  rows.push(
    ratioTarget(
      "hot SKU, durable: stockd batch API ÷ PostgreSQL sync=on (its best client)",
      pairs("hot", { system: (s) => same(s, "stockd gRPC batch") }, { system: pgOn }),
      batchOverPostgresMin,
      relaxed,
      "PostgreSQL sync=on",
    ),
  );
  for (const scenario of ["hot", "uniform"] as const) {
    rows.push(
      ratioTarget(
        `${scenarioTitle(scenario)}, durable: stockd single gRPC calls ÷ PostgreSQL sync=on, C client against C client`,
        pairs(
          scenario,
          { kind: "c", system: (s) => same(s, "stockd gRPC") },
          { kind: "c", system: pgOn },
        ),
        unaryOverPostgresMin,
        relaxed,
        "PostgreSQL sync=on (C client)",
      ),
    );
  }
  for (const scenario of ["hot", "uniform"] as const) {
    for (const transport of ["gRPC", "HTTP"] as const) {
      for (const kind of ["node", "c"] as const) {
        rows.push(
          ratioTarget(
            `${scenarioTitle(scenario)}: single-line reserve over ${transport} ÷ the bare ${transport} echo, ${kind === "c" ? "C" : "Node"} client`,
            pairs(
              scenario,
              { kind, system: (s) => same(s, `stockd ${transport}`) },
              { kind, system: (s) => same(s, `echo ${transport}`) },
              bestEcho,
            ),
            bareShareMin,
            null,
            results.settings.quick && kind === "node"
              ? "the echo (the quick run drives the echoes with C clients only)"
              : "the echo",
            true,
          ),
        );
      }
    }
  }
  return rows;
}

function latencyTargets(results: SuiteResults): TargetRow[] {
  const section = results.sections.latency;
  if (section === undefined) {
    return [
      {
        target: `p99 under ${halfRateP99MsMax} ms at half the maximum rate`,
        figures: "the latency section did not run",
        measured: "–",
        bound: `< ${halfRateP99MsMax} ms`,
        verdict: "not measured",
      },
    ];
  }
  const systems = [...new Set(section.rows.map((r) => driverKey(r)))];
  return systems.map((key) => {
    const row = section.rows.find((r) => driverKey(r) === key && r.fraction === 0.5);
    const p99 = row?.result.latencyMs?.p99;
    const name = `${key}, ${scenarioTitle(section.scenario)}: p99 at half the maximum rate`;
    if (row === undefined || p99 === undefined) {
      return {
        target: name,
        figures: "no open-loop run at 50%",
        measured: "–",
        bound: `< ${halfRateP99MsMax} ms`,
        verdict: "not measured" as const,
      };
    }
    return {
      target: name,
      figures:
        `${rate(row.result.ratePerS ?? 0)}/s offered (max ${rate(row.maxOkPerS)}/s), ` +
        `${rate(row.result.okPerS)}/s served, p50 ${ms(row.result.latencyMs?.p50)} ms`,
      measured: `${ms(p99)} ms`,
      bound: `< ${halfRateP99MsMax} ms`,
      verdict: p99 < halfRateP99MsMax ? ("met" as const) : ("**MISSED**" as const),
    };
  });
}

/** The latency section's own runs (its saturated row may repeat a run of
 * the comparison). */
function ownLatencyRuns(results: SuiteResults): RunResult[] {
  return (results.sections.latency?.rows ?? [])
    .filter((r) => !(r.fraction === null && r.repeatsCompare !== false))
    .map((r) => r.result);
}

function oversellTargets(results: SuiteResults): TargetRow[] {
  const byDriver = new Map<string, RunResult[]>();
  const all = [
    ...results.runs,
    ...(results.sections.scaling?.rows.map((r) => r.result) ?? []),
    ...ownLatencyRuns(results),
  ];
  for (const r of all) {
    const key = driverKey(r);
    byDriver.set(key, [...(byDriver.get(key) ?? []), r]);
  }
  // Runs that threw or timed out: a driver with none measured is listed
  // as not measured, not left out of the table.
  const failedRuns = new Map<string, string[]>();
  for (const f of results.failed) {
    if (f.client === undefined || f.tool === undefined || isBare(f.system)) continue;
    const key = driverKey({ system: f.system, client: f.client, tool: f.tool });
    const what = `${f.scenario ?? "?"}/${f.clients ?? "?"} (${f.reason})`;
    failedRuns.set(key, [...(failedRuns.get(key) ?? []), what]);
  }
  const rows: TargetRow[] = [];
  for (const [key, lost] of failedRuns) {
    if (byDriver.has(key)) continue;
    rows.push({
      target: `zero oversell: ${key}`,
      figures: `no run completed: ${lost.join(", ")}`,
      measured: "–",
      bound: `none; contention exactly ${contentionUnits}`,
      verdict: "not measured",
    });
  }
  for (const [key, runs] of [...byDriver].sort((a, b) => a[0].localeCompare(b[0]))) {
    if (isBare(runs[0]!.system)) continue;
    const failed = runs.filter((r) => r.consistent === false);
    const unchecked = runs.filter((r) => r.consistent === null);
    const contention = runs.filter((r) => r.scenario === "contention");
    const wrongCount = contention.filter((r) => r.ok !== contentionUnits);
    const checked = runs.length - unchecked.length;
    const parts = [`${checked} of ${runs.length} runs checked`];
    if (failed.length > 0) {
      parts.push(`inconsistent: ${failed.map((r) => `${r.scenario}/${r.clients}`).join(", ")}`);
    }
    if (contention.length > 0) {
      parts.push(
        `contention: ${contention.map((r) => r.ok).join(", ")} of ${contentionUnits} succeeded`,
      );
    }
    let verdict: TargetRow["verdict"] = "met";
    if (failed.length > 0 || wrongCount.length > 0) verdict = "**MISSED**";
    else if (checked === 0) verdict = "not measured";
    const lost = failedRuns.get(key);
    if (lost !== undefined) parts.push(`not run: ${lost.join(", ")}`);
    rows.push({
      target: `zero oversell: ${key}`,
      figures: parts.join("; "),
      measured:
        failed.length + wrongCount.length === 0
          ? "none found"
          : `${failed.length + wrongCount.length} runs`,
      bound: `none; contention exactly ${contentionUnits}`,
      verdict,
    });
  }
  return rows;
}

export function targetRows(results: SuiteResults): TargetRow[] {
  return [...throughputTargets(results), ...latencyTargets(results), ...oversellTargets(results)];
}

function targetSection(results: SuiteResults): string[] {
  const rows = targetRows(results);
  const missed = rows.filter((r) => r.verdict === "**MISSED**").length;
  const unmeasured = rows.filter((r) => r.verdict === "not measured").length;
  return [
    "",
    "## Targets",
    "",
    `${rows.length - missed - unmeasured} met, **${missed} missed**, ${unmeasured} not measured ` +
      `(targets are set for a 2-core machine; this one has ${results.machine.cores}).`,
    "",
    mdTable(
      ["target", "figures behind it", "measured", "target", "verdict"],
      rows.map((r) => [r.target, r.figures, r.measured, r.bound, r.verdict]),
      "llrrl",
    ),
  ];
}

// ---- scaling, latency, memory ----------------------------------------------------------------

function scalingSection(results: SuiteResults, chartDir: string, chartFiles: Set<string>) {
  const s = results.sections.scaling;
  if (s === undefined) return [];
  const lines = [
    "",
    `## Scaling with worker threads (${s.system}, ${scenarioTitle(s.scenario)}, ${s.clients} clients)`,
    "",
  ];
  if (s.rows.length === 0) return [...lines, "_Not measured (see left out, below)._"];
  const first = s.rows[0]!.result.okPerS;
  lines.push(
    mdTable(
      [
        "workers",
        "ok/s",
        "× 1 worker",
        "ok/s per worker",
        "server CPU µs/ok",
        "p99 ms",
        "consistent",
      ],
      s.rows.map((row) => [
        String(row.workerCount),
        rate(row.result.okPerS),
        first > 0 ? times(row.result.okPerS / first) : "–",
        rate(row.result.okPerS / row.workerCount),
        row.result.serverCpuUsPerOk === undefined ? "–" : row.result.serverCpuUsPerOk.toFixed(1),
        ms(row.result.latencyMs?.p99),
        consistentText(row.result),
      ]),
      "rrrrrrl",
    ),
    "",
    "Server CPU is the stockd process's (all its threads) over the measured window, per success. " +
      "The load generator runs on the same cores: with few cores it takes a share of them.",
  );
  if (chartFiles.has("scaling.svg")) lines.push("", `![scaling](${chartDir}/scaling.svg)`);
  return lines;
}

function latencySection(results: SuiteResults, chartDir: string, chartFiles: Set<string>) {
  const s = results.sections.latency;
  if (s === undefined) return [];
  const lines = [
    "",
    `## Latency at fixed arrival rates (${scenarioTitle(s.scenario)}, open loop, up to ${s.clients} in flight)`,
    "",
    "The maximum is the closed-loop throughput; the open-loop runs offer a fixed rate of " +
      "requests, sent on schedule whether or not earlier ones were answered.",
    "",
  ];
  if (s.rows.length === 0) return [...lines, "_Not measured (see left out, below)._"];
  lines.push(
    mdTable(
      [
        "system",
        "tool",
        "load",
        "offered/s",
        "ok/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "maximum from",
      ],
      s.rows.map((row) => [
        row.system,
        row.tool,
        row.fraction === null ? "saturated" : `${Math.round(row.fraction * 100)}%`,
        row.result.ratePerS === undefined ? "–" : rate(row.result.ratePerS),
        rate(row.result.okPerS),
        rate(row.result.errors),
        ms(row.result.latencyMs?.p50),
        ms(row.result.latencyMs?.p99),
        ms(row.result.latencyMs?.p999),
        `${rate(row.maxOkPerS)}/s, ${row.maxFrom}`,
      ]),
      "llrrrrrrrl",
    ),
  );
  if (chartFiles.has("latency-rates.svg")) {
    lines.push("", `![latency at fixed rates](${chartDir}/latency-rates.svg)`);
  }
  return lines;
}

function memorySection(results: SuiteResults): string[] {
  const s = results.sections.memory;
  if (s === undefined) return [];
  const lines = ["", `## Memory (${rate(s.itemCount)} of each, one partition, child process)`, ""];
  if (s.run === null) return [...lines, `_Not measured: ${s.error ?? "unknown error"}._`];
  const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
  const m = s.run;
  lines.push(
    `**Resident set:** ${rate(m.positions.count)} SKU positions **+${mb(m.positions.rssDeltaBytes)} MB** ` +
      `(${m.positions.rssBytesPerItem.toFixed(0)} B each); ${rate(m.holds.count)} open holds ` +
      `**+${mb(m.holds.rssDeltaBytes)} MB** (${m.holds.rssBytesPerItem.toFixed(0)} B each); ` +
      `together **${mb(m.positions.rssDeltaBytes + m.holds.rssDeltaBytes)} MB**.`,
    "",
    mdTable(
      ["item", "count", "resident B/item", "resident MB", "heap+arrays B/item", "heap+arrays MB"],
      (
        [
          ["SKU position", m.positions],
          ["open hold", m.holds],
          ["open hold with request id", m.holdsWithRequestId],
          ["ended hold (idempotency window)", m.endedHolds],
        ] as const
      ).map(([name, f]) => [
        name,
        rate(f.count),
        f.rssBytesPerItem.toFixed(1),
        mb(f.rssDeltaBytes),
        f.heapBytesPerItem.toFixed(1),
        mb(f.heapDeltaBytes),
      ]),
      "lrrrrr",
    ),
    "",
    "Measured by bench/memory.ts in its own process (`--expose-gc`), growth of the resident " +
      "set and of the V8 heap plus typed-array buffers (where open holds and remembered requests live) after a full GC, in one engine partition (no gateway, no journal).",
  );
  return lines;
}

// ---- left out, notes -------------------------------------------------------------------------

function leftOutLines(title: string, entries: LeftOut[]): string[] {
  if (entries.length === 0) return [];
  const grouped = new Map<string, string[]>();
  for (const e of entries) {
    const who =
      e.client === undefined || e.tool === undefined
        ? e.system
        : driverKey({ system: e.system, client: e.client, tool: e.tool });
    const key = `${e.section}: ${who} — ${e.reason}`;
    const what =
      e.scenario === undefined
        ? ""
        : `${e.scenario}${e.clients === undefined ? "" : `/${e.clients}`}`;
    grouped.set(key, [...(grouped.get(key) ?? []), what]);
  }
  const lines = ["", `### ${title}`, ""];
  for (const [key, what] of grouped) {
    const scen = what.filter((w) => w !== "");
    lines.push(`- ${key}${scen.length > 0 ? ` (${scen.join(", ")})` : ""}`);
  }
  return lines;
}

function notesSection(results: SuiteResults): string[] {
  // driver -> note -> the runs that gave it
  const notes = new Map<string, Map<string, string[]>>();
  const all = [
    ...results.runs,
    ...(results.sections.scaling?.rows.map((r) => r.result) ?? []),
    ...ownLatencyRuns(results),
  ];
  for (const r of all) {
    const key = driverKey(r);
    for (const n of r.notes ?? []) {
      const byNote = notes.get(key) ?? new Map<string, string[]>();
      const where = `${r.scenario}/${r.clients}${r.ratePerS === undefined ? "" : `@${rate(r.ratePerS)}/s`}`;
      byNote.set(n, [...(byNote.get(n) ?? []), where]);
      notes.set(key, byNote);
    }
  }
  const lines: string[] = [];
  if (results.skipped.length + results.failed.length + notes.size > 0) {
    lines.push("", "## Left out, failures and notes");
  }
  lines.push(...leftOutLines("Failed (threw or timed out)", results.failed));
  lines.push(...leftOutLines("Skipped by the driver", results.skipped));
  if (notes.size > 0) {
    lines.push("", "### Notes from the drivers", "");
    for (const [key, byNote] of notes) {
      lines.push(`- **${key}**`);
      for (const [n, where] of byNote) lines.push(`  - ${n} (${where.join(", ")})`);
    }
  }
  return lines;
}

export interface ReportInput {
  results: SuiteResults;
  /** The results file, as shown to the reader. */
  resultsPath: string;
  /** Charts' directory relative to the markdown file. */
  chartDir: string;
  /** Chart files that exist (others are not linked). */
  chartFiles: Set<string>;
}

export function suiteMarkdown(input: ReportInput): string {
  const { results, resultsPath, chartDir, chartFiles } = input;
  const lines = [
    ...header(results, resultsPath),
    ...targetSection(results),
    ...scenarioSections(results, chartDir, chartFiles),
    ...ratioSection(results),
    ...scalingSection(results, chartDir, chartFiles),
    ...latencySection(results, chartDir, chartFiles),
    ...memorySection(results),
    ...notesSection(results),
  ];
  return `${lines.join("\n")}\n`;
}
