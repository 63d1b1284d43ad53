// stockd's own view of a measured window, from its /metrics read at the
// window's start and end: how long its journal commits took (the
// stockd_journal_commit_duration_seconds histogram), how long it took to
// answer (stockd_request_duration_seconds, one method) and how late its
// main thread's event loop ran (prom-client's nodejs_eventloop_lag_*,
// which restarts at every scrape). Set beside the load generator's
// latency, it tells whether a tail is the journal's, the server's or the
// wait outside it (the network, the load generator, a core).

import { eventLoopSamplingMs } from "../../src/gateway/metrics.ts";
import { grouped } from "./stats.ts";

/** What two scrapes tell of the window between them. */
export interface ServerView {
  commits: number;
  commitMeanMs: number | null;
  /** Upper bound (ms) of the histogram bucket that holds the 99th
   * percentile; null when there were no commits. */
  commitP99MsAtMost: number | null;
  /** Share of commits over 10 ms. */
  commitsOver10msShare: number | null;
  requests: number;
  requestP99MsAtMost: number | null;
  requestsOver10msShare: number | null;
  /** The main thread's event-loop lag over the window, p99 and max (ms):
   * how late its samples ran beyond their interval. */
  eventLoopLagP99Ms: number | null;
  eventLoopLagMaxMs: number | null;
  /** The workers' event-loop lag over their last 10 s window (the worst
   * worker's; null in-process or before a window ended). */
  workerLagP99Ms: number | null;
  workerLagMaxMs: number | null;
}

interface Scrape {
  text: string;
}

const scrapeTimeoutMs = 5_000;

/** Reads /metrics; null when the server does not answer (the view is then
 * left out, never guessed). */
export async function scrape(baseUrl: string): Promise<Scrape | null> {
  try {
    const r = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(scrapeTimeoutMs) });
    if (!r.ok) return null;
    return { text: await r.text() };
  } catch {
    return null;
  }
}

/** Cumulative bucket counts by upper bound (seconds; +Inf last) of one
 * histogram series whose labels include every one of `labels`. */
function buckets(text: string, name: string, labels: string[]): [number, number][] {
  const out: [number, number][] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const close = line.indexOf("}");
    const labelText = line.slice(name.length + "_bucket{".length, close);
    if (!labels.every((l) => labelText.includes(l))) continue;
    const le = /le="([^"]+)"/.exec(labelText)?.[1];
    if (le === undefined) continue;
    out.push([
      le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le),
      Number(line.slice(close + 2)),
    ]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/** The largest value of a gauge over its label sets (ms from seconds). */
function worstMs(text: string, name: string): number | null {
  let worst: number | null = null;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) {
    const v = Number(m[1]) * 1000;
    if (worst === null || v > worst) worst = v;
  }
  return worst;
}

function scalar(text: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
  return m === null ? null : Number(m[1]);
}

interface Distribution {
  count: number;
  p99MsAtMost: number | null;
  over10msShare: number | null;
}

/** The distribution of the observations made between two scrapes. */
function between(a: Scrape, b: Scrape, name: string, labels: string[]): Distribution {
  const before = new Map(buckets(a.text, name, labels));
  const after = buckets(b.text, name, labels);
  const delta = after.map(([le, n]) => [le, n - (before.get(le) ?? 0)] as const);
  const count = delta.at(-1)?.[1] ?? 0;
  if (count <= 0) return { count: 0, p99MsAtMost: null, over10msShare: null };
  const p99 = delta.find(([, n]) => n >= count * 0.99)?.[0] ?? Number.POSITIVE_INFINITY;
  const within10ms = delta.find(([le]) => le >= 0.01)?.[1] ?? count;
  return {
    count,
    p99MsAtMost: p99 * 1000,
    over10msShare: (count - within10ms) / count,
  };
}

/** The window's view; `method` names the request histogram's series. */
export function serverView(
  a: Scrape | null,
  b: Scrape | null,
  transport: string,
  method: string,
): ServerView | null {
  if (a === null || b === null) return null;
  const commits = between(a, b, "stockd_journal_commit_duration_seconds", []);
  const sumDelta =
    (scalar(b.text, "stockd_journal_commit_duration_seconds_sum") ?? 0) -
    (scalar(a.text, "stockd_journal_commit_duration_seconds_sum") ?? 0);
  const requests = between(a, b, "stockd_request_duration_seconds", [
    `transport="${transport}"`,
    `method="${method}"`,
  ]);
  const lag = (name: string) => {
    const v = scalar(b.text, name);
    return v === null ? null : Math.max(0, v * 1000 - eventLoopSamplingMs);
  };
  return {
    commits: commits.count,
    commitMeanMs: commits.count > 0 ? (sumDelta * 1000) / commits.count : null,
    commitP99MsAtMost: commits.p99MsAtMost,
    commitsOver10msShare: commits.over10msShare,
    requests: requests.count,
    requestP99MsAtMost: requests.p99MsAtMost,
    requestsOver10msShare: requests.over10msShare,
    eventLoopLagP99Ms: lag("nodejs_eventloop_lag_p99_seconds"),
    eventLoopLagMaxMs: lag("nodejs_eventloop_lag_max_seconds"),
    workerLagP99Ms: worstMs(b.text, "stockd_worker_event_loop_lag_p99_seconds"),
    workerLagMaxMs: worstMs(b.text, "stockd_worker_event_loop_lag_max_seconds"),
  };
}

/** The columns a benchmark's table gives each view, after its own. */
export const viewHeaders = [
  "loadgen p99 ms",
  "server p99",
  "server > 10 ms",
  "commits",
  "commit mean ms",
  "commit p99",
  "commits > 10 ms",
  "main late p99 / max ms",
  "worker late p99 / max ms",
];

/** The cells under `viewHeaders`, beside the load generator's p99. */
export function viewCells(loadgenP99Ms: number, v: ServerView): string[] {
  const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)}%`);
  const num = (x: number | null) => (x === null ? "-" : x.toFixed(2));
  return [
    loadgenP99Ms.toFixed(2),
    atMostText(v.requestP99MsAtMost),
    pct(v.requestsOver10msShare),
    grouped(v.commits),
    num(v.commitMeanMs),
    atMostText(v.commitP99MsAtMost),
    pct(v.commitsOver10msShare),
    `${num(v.eventLoopLagP99Ms)} / ${num(v.eventLoopLagMaxMs)}`,
    `${num(v.workerLagP99Ms)} / ${num(v.workerLagMaxMs)}`,
  ];
}

/** What the columns mean, after the table; `server` names the request
 * histogram's series. */
export function viewNote(server: string): string {
  return (
    `(server: stockd_request_duration_seconds of ${server}, from its arrival to its answer;\n` +
    " commit: stockd_journal_commit_duration_seconds (replicated, with its JetStream publishes);\n" +
    " p99 as the bound of the histogram bucket that holds it; late: how far the main thread's\n" +
    " event loop (nodejs_eventloop_lag_*) and the worst worker's over its last 10 s\n" +
    " (stockd_worker_event_loop_lag_*) ran beyond their sampling interval)"
  );
}

/** "≤ 5 ms", "> 2.5 s" (the last bucket), or "-". */
function atMostText(ms: number | null): string {
  if (ms === null) return "-";
  if (!Number.isFinite(ms)) return "> top bucket";
  return `≤ ${ms < 1 ? ms.toFixed(1) : Math.round(ms)} ms`;
}
