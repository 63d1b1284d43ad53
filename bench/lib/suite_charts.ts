// The comparison report's charts: vega-lite specs rendered to SVG in Node
// (no browser, no canvas: vega's "none" renderer writes the SVG text).
// Throughput against concurrent clients per scenario, contention, latency
// percentiles at saturation and at fixed arrival rates, and scaling with
// workers.

import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { RunResult, ScenarioName } from "./scenario.ts";
import { driverKey, type SuiteResults, sortRuns, throughputOf } from "./suite_results.ts";

export interface Chart {
  /** File name without directory, e.g. "throughput-hot.svg". */
  file: string;
  title: string;
  spec: TopLevelSpec;
}

/** Enough distinct colours for every driver of a full run. */
const colorScheme = "category20" as const;

/** One colour per driver in every chart: the domain is every driver of
 * the run, in the report's order (set by suiteCharts). */
let driverDomain: string[] = [];

function driverColor() {
  return { scheme: colorScheme, domain: driverDomain };
}
const chartWidth = 560;
const chartHeight = 300;

const scenarioTitles: Record<ScenarioName, string> = {
  hot: "hot SKU",
  uniform: "uniform SKUs",
  checkout: "checkout (3 lines)",
  contention: "contention for the last units",
};

export function scenarioTitle(s: ScenarioName): string {
  return scenarioTitles[s];
}

interface ThroughputPoint {
  driver: string;
  client: string;
  clients: number;
  okPerS: number;
}

/** The log scale's ends: at least half a decade below the smallest value
 * (a bar on a log scale needs a base other than zero), the next power of
 * ten above the largest. */
function logDomain(values: number[]): [number, number] {
  const low = 10 ** Math.floor(Math.log10(Math.min(...values)) - 0.5);
  const high = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  return [low, high];
}

/** Horizontal bars, one per driver, on a log scale, in the report's order. */
function driverBars(
  file: string,
  title: string,
  axisTitle: string,
  values: { driver: string; value: number }[],
): Chart {
  const [low, high] = logDomain(values.map((v) => v.value));
  return {
    file,
    title,
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v5.json",
      title,
      width: chartWidth,
      data: { values },
      mark: "bar",
      encoding: {
        y: {
          field: "driver",
          type: "nominal",
          sort: null,
          title: null,
          axis: { labelLimit: 400 },
        },
        x: {
          field: "value",
          type: "quantitative",
          scale: { type: "log", domain: [low, high] },
          title: axisTitle,
        },
        x2: { datum: low },
        color: { field: "driver", type: "nominal", scale: driverColor(), legend: null },
      },
    },
  };
}

function throughputChart(scenario: ScenarioName, runs: RunResult[]): Chart | null {
  const values: ThroughputPoint[] = sortRuns(runs)
    .filter((r) => r.scenario === scenario && r.ratePerS === undefined && r.okPerS > 0)
    .map((r) => ({
      driver: driverKey(r),
      client: r.client === "c" ? "C client" : "Node client",
      clients: r.clients,
      okPerS: r.okPerS,
    }));
  if (values.length === 0) return null;
  const clientCounts = [...new Set(values.map((v) => v.clients))];
  if (clientCounts.length === 1) {
    // One number of clients (the quick run): bars read better than points.
    return driverBars(
      `throughput-${scenario}.svg`,
      `${scenarioTitle(scenario)}: successes/s, ${clientCounts[0]} concurrent clients`,
      "successes/s (log scale)",
      values.map((v) => ({ driver: v.driver, value: v.okPerS })),
    );
  }
  const title = `${scenarioTitle(scenario)}: successes/s against concurrent clients (solid: C client, dashed: Node client)`;
  return {
    file: `throughput-${scenario}.svg`,
    title,
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v5.json",
      title,
      width: chartWidth,
      height: chartHeight,
      data: { values },
      mark: { type: "line", point: true },
      encoding: {
        x: {
          field: "clients",
          type: "quantitative",
          scale: { type: "log", base: 2 },
          axis: { values: [...new Set(values.map((v) => v.clients))] },
          title: "concurrent clients",
        },
        y: {
          field: "okPerS",
          type: "quantitative",
          scale: { type: "log" },
          title: "successes/s (log scale)",
        },
        color: {
          field: "driver",
          type: "nominal",
          scale: driverColor(),
          title: null,
          legend: { labelLimit: 400 },
        },
        strokeDash: {
          field: "client",
          type: "nominal",
          title: null,
          scale: {
            domain: ["C client", "Node client"],
            range: [
              [1, 0],
              [6, 3],
            ],
          },
          // The driver's name says which client; the legend is the colours'.
          legend: null,
        },
      },
    },
  };
}

function contentionChart(runs: RunResult[]): Chart | null {
  const values = sortRuns(runs)
    .filter((r) => r.scenario === "contention" && throughputOf(r) > 0)
    .map((r) => ({ driver: driverKey(r), value: throughputOf(r) }));
  if (values.length === 0) return null;
  return driverBars(
    "contention.svg",
    "contention: answers/s (successes and refusals) while the last units went",
    "answers/s (log scale)",
    values,
  );
}

interface PercentilePoint {
  /** The facet (one panel per system) and the bar group in it. */
  panel: string;
  group: string;
  percentile: string;
  ms: number;
}

function percentilePoints(panel: string, group: string, r: RunResult): PercentilePoint[] {
  const l = r.latencyMs;
  if (l === undefined) return [];
  return [
    { panel, group, percentile: "p50", ms: l.p50 },
    { panel, group, percentile: "p99", ms: l.p99 },
    { panel, group, percentile: "p999", ms: l.p999 },
  ].filter((p) => p.ms > 0);
}

/** Grouped bars of p50/p99/p999 on a log scale; bars start at the power of
 * ten below the smallest value (a log scale has no zero to start from). */
function percentileBars(
  file: string,
  title: string,
  values: PercentilePoint[],
  groupTitle: string,
  facet: boolean,
): Chart {
  const [floorMs, ceilingMs] = logDomain(values.map((v) => v.ms));
  const percentiles = ["p50", "p99", "p999"];
  const inner = {
    width: { step: 16 },
    height: chartHeight,
    mark: "bar" as const,
    encoding: {
      x: {
        field: "group",
        type: "nominal" as const,
        title: groupTitle,
        sort: null,
        axis: { labelAngle: -35, labelLimit: 400 },
      },
      xOffset: { field: "percentile", type: "nominal" as const, sort: percentiles },
      y: {
        field: "ms",
        type: "quantitative" as const,
        scale: { type: "log" as const, domain: [floorMs, ceilingMs] },
        title: "latency, ms (log scale)",
      },
      y2: { datum: floorMs },
      color: { field: "percentile", type: "nominal" as const, sort: percentiles },
    },
  };
  const spec: TopLevelSpec = facet
    ? {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        title,
        data: { values },
        facet: {
          column: { field: "panel", type: "nominal", title: null, header: { labelLimit: 400 } },
        },
        spec: inner,
      }
    : {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        title,
        data: { values },
        ...inner,
      };
  return { file, title, spec };
}

/** Per driver, its run with the most clients: latency at saturation. */
function saturationChart(scenario: ScenarioName, runs: RunResult[]): Chart | null {
  const byDriver = new Map<string, RunResult>();
  for (const r of sortRuns(runs)) {
    if (r.scenario !== scenario || r.ratePerS !== undefined) continue;
    const key = driverKey(r);
    const seen = byDriver.get(key);
    if (seen === undefined || r.clients > seen.clients) byDriver.set(key, r);
  }
  const values = [...byDriver.values()].flatMap((r) =>
    percentilePoints("", `${driverKey(r)}, ${r.clients} cl.`, r),
  );
  if (values.length === 0) return null;
  return percentileBars(
    `latency-saturation-${scenario}.svg`,
    `${scenarioTitle(scenario)}: latency at saturation (closed loop, most clients)`,
    values,
    "system (client: tool), clients",
    false,
  );
}

function latencyRatesChart(results: SuiteResults): Chart | null {
  const section = results.sections.latency;
  if (section === undefined) return null;
  const values = section.rows.flatMap((row) =>
    percentilePoints(
      driverKey(row),
      row.fraction === null ? "saturated" : `${Math.round(row.fraction * 100)}% of max`,
      row.result,
    ),
  );
  if (values.length === 0) return null;
  const fractions = [
    ...new Set(section.rows.flatMap((r) => (r.fraction === null ? [] : [r.fraction]))),
  ]
    .map((f) => `${Math.round(f * 100)}%`)
    .join(", ");
  return percentileBars(
    "latency-rates.svg",
    `${scenarioTitle(section.scenario)}: latency at ${fractions} of the maximum rate (open loop) and saturated`,
    values,
    "offered load",
    true,
  );
}

function scalingChart(results: SuiteResults): Chart | null {
  const section = results.sections.scaling;
  if (section === undefined || section.rows.length === 0) return null;
  const values = section.rows.map((row) => ({
    workers: row.workerCount,
    okPerS: row.result.okPerS,
  }));
  const title = `${section.system}, ${scenarioTitle(section.scenario)}: successes/s by worker threads`;
  return {
    file: "scaling.svg",
    title,
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v5.json",
      title,
      width: chartWidth,
      height: chartHeight,
      data: { values },
      mark: { type: "line", point: true },
      encoding: {
        x: {
          field: "workers",
          type: "quantitative",
          axis: { values: values.map((v) => v.workers), format: "d" },
          title: "stockd worker threads",
        },
        y: { field: "okPerS", type: "quantitative", title: "successes/s", scale: { zero: true } },
      },
    },
  };
}

export function suiteCharts(results: SuiteResults): Chart[] {
  driverDomain = [...new Set(sortRuns(results.runs).map((r) => driverKey(r)))];
  const charts: (Chart | null)[] = [];
  for (const s of ["hot", "uniform", "checkout"] as const) {
    charts.push(throughputChart(s, results.runs));
  }
  charts.push(contentionChart(results.runs));
  for (const s of ["hot", "uniform", "checkout"] as const) {
    charts.push(saturationChart(s, results.runs));
  }
  charts.push(latencyRatesChart(results), scalingChart(results));
  return charts.filter((c): c is Chart => c !== null);
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
