import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { commitMsBounds, type Engine, type EngineStats, type LoopLag } from "../host/index.ts";

// Prometheus metrics, served at GET /metrics. Request metrics are observed
// on the hot path through label-bound children; engine figures are read
// from the workers when scraped.

/** How often the event-loop lag is sampled (prom-client's precision): the
 * nodejs_eventloop_lag_* figures are intervals between samples, so they
 * include it; the lag is what exceeds it. */
export const eventLoopSamplingMs = 10;

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"transport" | "method" | "code">;
  private readonly latency: Histogram<"transport" | "method">;
  private readonly reservations: Counter<"outcome">;
  private readonly latencyOf = new Map<string, { observe(seconds: number): void }>();
  /** Label-bound children by their labels joined (see `kept`). */
  private readonly requestsOf = new Map<string, { inc(n?: number): void }>();
  private readonly reservationsOf = new Map<string, { inc(n?: number): void }>();

  constructor(engine: () => Engine | null) {
    const registers = [this.registry];
    // The process's own figures (CPU, memory, event-loop lag, garbage
    // collection pauses): where a request's tail latency goes when the
    // journal's commits are fast.
    collectDefaultMetrics({
      register: this.registry,
      eventLoopMonitoringPrecision: eventLoopSamplingMs,
    });
    this.requests = new Counter({
      name: "stockd_requests_total",
      help: "Requests answered, by transport, method and result code",
      labelNames: ["transport", "method", "code"],
      registers,
    });
    this.latency = new Histogram({
      name: "stockd_request_duration_seconds",
      help: "Time from request to answer, by transport and method",
      labelNames: ["transport", "method"],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.reservations = new Counter({
      name: "stockd_reservations_total",
      help: "Reservations answered, by outcome (HELD or the refusal's code)",
      labelNames: ["outcome"],
      registers,
    });
    const stats = async () => {
      const e = engine();
      return e === null ? null : await e.stats();
    };
    // One read of the workers per scrape, shared by the engine gauges.
    let scrape: Promise<Awaited<ReturnType<typeof stats>>> | null = null;
    const read = () => {
      scrape ??= stats().finally(() => {
        setImmediate(() => {
          scrape = null;
        });
      });
      return scrape;
    };
    const engineGauge = (name: string, help: string, pick: (s: EngineStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const s = await read();
          if (s !== null) this.set(pick(s));
        },
      });
    engineGauge("stockd_expired_holds_total", "Holds expired at their deadline", (s) => s.expired);
    engineGauge("stockd_commands_total", "Commands executed by the partitions", (s) => s.commands);
    engineGauge("stockd_journal_commits_total", "Journal transactions", (s) => s.commits);
    engineGauge("stockd_journal_events_total", "Events journaled", (s) => s.eventsJournaled);
    engineGauge(
      "stockd_journal_commit_seconds_total",
      "Time spent in journal transactions (with fsync); divide by commits for the mean",
      (s) => s.commitMsTotal / 1000,
    );
    // The commit-time distribution, counted by the partitions' hosts: a
    // histogram a scrape reads whole, not one observed here.
    const commitName = "stockd_journal_commit_duration_seconds";
    const commitHelp =
      "Journal commits by time: the transaction, its sync and, replicated, its JetStream publishes";
    this.registry.registerMetric({
      name: commitName,
      help: commitHelp,
      type: "histogram",
      async get() {
        const st = await read();
        const counts = st?.commitMsCounts ?? new Array<number>(commitMsBounds.length + 1).fill(0);
        const values: { metricName: string; labels: { le?: string }; value: number }[] = [];
        let cumulative = 0;
        commitMsBounds.forEach((bound, i) => {
          cumulative += counts[i] ?? 0;
          values.push({
            metricName: `${commitName}_bucket`,
            labels: { le: String(bound / 1000) },
            value: cumulative,
          });
        });
        cumulative += counts[commitMsBounds.length] ?? 0;
        values.push({
          metricName: `${commitName}_bucket`,
          labels: { le: "+Inf" },
          value: cumulative,
        });
        values.push({
          metricName: `${commitName}_sum`,
          labels: {},
          value: (st?.commitMsTotal ?? 0) / 1000,
        });
        values.push({ metricName: `${commitName}_count`, labels: {}, value: cumulative });
        return { name: commitName, help: commitHelp, type: "histogram", aggregator: "sum", values };
      },
      // prom-client types registerMetric for its own classes; a registry
      // reads any object with this shape (name, help, type, get).
    } as unknown as Parameters<Registry["registerMetric"]>[0]);
    engineGauge(
      "stockd_journal_batch_events_max",
      "Most events in one journal transaction",
      (s) => s.commitBatchEventsMax,
    );
    engineGauge("stockd_open_holds", "Open holds", (s) => s.holds);
    engineGauge("stockd_positions", "SKU positions", (s) => s.positions);
    /** A gauge per worker: `pick` gives each worker's value (null: none). */
    const workerGauge = (name: string, help: string, pick: (s: EngineStats) => (number | null)[]) =>
      new Gauge({
        name,
        help,
        labelNames: ["worker"],
        registers,
        async collect() {
          const s = await read();
          if (s === null) return;
          pick(s).forEach((v, w) => {
            if (v !== null) this.set({ worker: String(w) }, v);
          });
        },
      });
    const lagSeconds = (s: EngineStats, of: (l: LoopLag) => number) =>
      s.loopLags.map((l) => (l === null ? null : of(l) / 1000));
    workerGauge(
      "stockd_worker_event_loop_lag_p99_seconds",
      "How late a worker thread's event loop ran, 99th percentile over its last 10 s window",
      (s) => lagSeconds(s, (l) => l.p99Ms),
    );
    workerGauge(
      "stockd_worker_event_loop_lag_max_seconds",
      "How late a worker thread's event loop ran at most, over its last 10 s window",
      (s) => lagSeconds(s, (l) => l.maxMs),
    );
    workerGauge(
      "stockd_worker_messages_total",
      "Messages that carried commands to a worker (commands per message: divide stockd_commands_total by their sum)",
      (s) => s.messagesSent,
    );
    workerGauge(
      "stockd_worker_queue_depth",
      "Commands sent to a worker and not yet answered",
      (s) => s.queueDepths,
    );
  }

  /** Records one answered request. */
  observe(transport: string, method: string, code: string, seconds: number): void {
    const key = `${transport} ${method}`;
    const h =
      this.latencyOf.get(key) ?? kept(this.latencyOf, key, this.latency.labels(transport, method));
    h.observe(seconds);
    const counted = `${key} ${code}`;
    const c =
      this.requestsOf.get(counted) ??
      kept(this.requestsOf, counted, this.requests.labels(transport, method, code));
    c.inc();
  }

  reservation(outcome: string, count = 1): void {
    const c =
      this.reservationsOf.get(outcome) ??
      kept(this.reservationsOf, outcome, this.reservations.labels(outcome));
    c.inc(count);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Keeps a metric's child bound to one set of labels under `key` (its
 * labels joined), and returns it: made once, on the first request with
 * those labels; a labels object would be hashed on every request. */
function kept<T>(cache: Map<string, T>, key: string, child: T): T {
  cache.set(key, child);
  return child;
}
