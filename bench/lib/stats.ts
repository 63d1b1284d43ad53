// Figures for the benchmarks: a bounded latency histogram, rates, targets
// and a plain-text table. Nothing here reads a clock.

/** Exact counts below this many nanoseconds; log-linear buckets above. */
const linearNsMax = 256;
/** Sub-buckets per power of two above `linearNsMax`: relative error < 1%. */
const subBucketBits = 7;
const subBucketCount = 1 << subBucketBits;
/** Powers of two covered: 2^8 ns up to 2^52 ns (52 days). */
const magnitudeCount = 52 - 8;

/**
 * An HDR-like histogram of latencies in nanoseconds: fixed memory
 * (~45 KB), O(1) record, percentiles within 1% of the true value.
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(linearNsMax + magnitudeCount * subBucketCount);
  private countValue = 0;
  private sumNs = 0;
  private minNs = Number.POSITIVE_INFINITY;
  private maxNs = 0;

  get count(): number {
    return this.countValue;
  }

  recordMs(latencyMs: number): void {
    this.record(Math.round(latencyMs * 1e6));
  }

  record(latencyNs: number): void {
    const v = Math.max(latencyNs, 0);
    this.counts[bucketIndex(v)]!++;
    this.countValue++;
    this.sumNs += v;
    if (v < this.minNs) this.minNs = v;
    if (v > this.maxNs) this.maxNs = v;
  }

  /** The latency (ns) at or below which `fraction` of the samples fall. */
  percentileNs(fraction: number): number {
    if (this.countValue === 0) return 0;
    const rank = Math.max(1, Math.ceil(fraction * this.countValue));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(Math.max(bucketValue(i), this.minNs), this.maxNs);
    }
    return this.maxNs;
  }

  summaryMs(): LatencySummary {
    const ms = (ns: number) => round(ns / 1e6, 3);
    return {
      count: this.countValue,
      meanMs: this.countValue === 0 ? 0 : ms(this.sumNs / this.countValue),
      p50Ms: ms(this.percentileNs(0.5)),
      p99Ms: ms(this.percentileNs(0.99)),
      p999Ms: ms(this.percentileNs(0.999)),
      maxMs: ms(this.maxNs),
    };
  }
}

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

function bucketIndex(v: number): number {
  if (v < linearNsMax) return Math.floor(v);
  const magnitude = Math.min(Math.floor(Math.log2(v)), 51);
  const shift = magnitude - subBucketBits;
  const sub = Math.min(Math.floor(v / 2 ** shift), 2 * subBucketCount - 1) - subBucketCount;
  return linearNsMax + (magnitude - 8) * subBucketCount + sub;
}

/** The midpoint of a bucket. */
function bucketValue(index: number): number {
  if (index < linearNsMax) return index;
  const i = index - linearNsMax;
  const magnitude = Math.floor(i / subBucketCount) + 8;
  const sub = (i % subBucketCount) + subBucketCount;
  return (sub + 0.5) * 2 ** (magnitude - subBucketBits);
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Operations per second. */
export function ratePerS(count: number, elapsedMs: number): number {
  return elapsedMs <= 0 ? 0 : Math.round((count * 1000) / elapsedMs);
}

/** 1234567 -> "1,234,567". */
export function grouped(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

// ---- targets ------------------------------------------------------------------

export interface Target {
  /** What the figure is, e.g. "reservations/s per worker, no journal". */
  name: string;
  value: number;
  unit: string;
  /** "atLeast": value >= bound passes; "below": value < bound passes. */
  kind: "atLeast" | "below";
  bound: number;
  verdict: "PASS" | "MISS";
}

export function target(
  name: string,
  value: number,
  unit: string,
  kind: Target["kind"],
  bound: number,
): Target {
  const ok = kind === "atLeast" ? value >= bound : value < bound;
  return { name, value, unit, kind, bound, verdict: ok ? "PASS" : "MISS" };
}

/** "PASS (>= 1,000,000)" */
export function verdictText(t: Target): string {
  return `${t.verdict} (${t.kind === "atLeast" ? ">=" : "<"} ${grouped(t.bound)})`;
}

// ---- tables -------------------------------------------------------------------

/** A plain-text table; numeric-looking cells are right-aligned. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const numeric = /^[-+]?[\d,.]+( ?[a-zA-Z/%]*)?$/;
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => {
        const w = widths[c] ?? 0;
        return numeric.test(cell) ? cell.padStart(w) : cell.padEnd(w);
      })
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(headers), rule, ...rows.map(line)].join("\n");
}

/** stockd's throughput in a scenario against the bare echo server's in the
 * same run (the gateway benchmarks). */
export interface EchoComparison<S extends string> {
  scenario: S;
  stockd: number;
  echo: number;
  fraction: number;
  /** The most other work on the machine took during either run, in cores:
   * above a quarter of a core, the comparison is suspect. */
  otherCoresMax: number | null;
}

interface ComparedRun<S extends string> {
  server: "stockd" | "echo" | "floor";
  scenario: S;
  ratePerS: number | null;
  cpu: { otherCores: number | null };
}

/** Every closed-loop stockd run against the echo run of its scenario. */
export function compareWithEcho<S extends string, R extends ComparedRun<S>>(
  runs: R[],
  throughputOf: (r: R) => number,
): EchoComparison<S>[] {
  const out: EchoComparison<S>[] = [];
  for (const r of runs) {
    if (r.server !== "stockd" || r.ratePerS !== null) continue;
    const echo = runs.find((e) => e.server === "echo" && e.scenario === r.scenario);
    if (echo === undefined) continue;
    const a = throughputOf(r);
    const b = throughputOf(echo);
    const others = [r.cpu.otherCores, echo.cpu.otherCores];
    out.push({
      scenario: r.scenario,
      stockd: a,
      echo: b,
      fraction: b > 0 ? round(a / b, 3) : 0,
      otherCoresMax: others.includes(null) ? null : Math.max(...(others as number[])),
    });
  }
  return out;
}
