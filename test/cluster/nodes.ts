import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { cli, type LogLine, type Served, serve } from "../cli/support.ts";

// stockd cluster nodes as child processes (`stockd serve --nats ...`) for
// failover tests, and an HTTP client that sends each request to whichever
// node leads: it follows a follower's 503 (which names the leader), and on a
// refused connection, a timeout or a node still starting tries the others.

export const secret = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

// Children still running: killed (after a SIGCONT, for a frozen one) when
// the test process exits, so no test leaves a stockd behind.
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    } catch {}
  }
});

export interface NodeConfig {
  /** NATS URLs, comma-separated. */
  nats: string;
  cluster: string;
  leaseMs: number;
  /** Default hold duration (`--hold-duration`). */
  hold?: string;
}

export interface Readiness {
  status: string;
  role: string;
  detail: string;
}

/** A stockd cluster node: one data directory, run (and re-run) as a child. */
export class StockdNode {
  readonly runs: Served[] = [];
  /** Runs that exited without the test stopping them: exit code and stderr's tail. */
  readonly crashes: string[] = [];
  private stopping = false;
  /** Where the current run serves HTTP (null before it listens). */
  url: string | null = null;
  frozen = false;

  constructor(
    readonly name: string,
    readonly dir: string,
    private readonly config: NodeConfig,
  ) {}

  get served(): Served | null {
    return this.runs.at(-1) ?? null;
  }

  /** The current run is alive (possibly frozen). */
  get running(): boolean {
    const c = this.served?.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** Starts a run on the same data directory; resolves once it listens. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`node ${this.name} is already running`);
    const s = serve(
      [
        ...["--data", this.dir, "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"],
        ...["--workers", "1", "--partitions", "8", "--hold-duration", this.config.hold ?? "10m"],
        ...["--nats", this.config.nats, "--cluster", this.config.cluster, "--node", this.name],
        ...["--lease", `${this.config.leaseMs}ms`],
      ],
      { STOCKD_JWT_SECRET: secret },
    );
    live.add(s.child);
    const run = this.runs.length;
    this.stopping = false;
    void s.exit.then((r) => {
      live.delete(s.child);
      if (!this.stopping) {
        this.crashes.push(
          `${this.name}#${run} exited by itself (code ${r.code}, signal ${s.child.signalCode}); stderr:\n${r.stderr.slice(-2_000)}`,
        );
      }
    });
    this.runs.push(s);
    this.url = null;
    this.frozen = false;
    const listening = await s.waitForLog((l) => l.msg === "listening", `${this.name} listening`);
    this.url = `http://127.0.0.1:${listening.httpPort as number}`;
  }

  /** Sends a signal to the current run; SIGKILL and SIGTERM wait for its exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const s = this.served;
    if (s === null || !this.running) return;
    if (signal === "SIGSTOP") {
      s.child.kill("SIGSTOP");
      this.frozen = true;
      return;
    }
    if (signal === "SIGCONT") {
      s.child.kill("SIGCONT");
      this.frozen = false;
      return;
    }
    this.stopping = true;
    s.child.kill(signal);
    if (signal === "SIGKILL" && this.frozen) s.child.kill("SIGCONT");
    await s.exit;
    this.frozen = false;
  }

  /** Every log line of every run, each with its run number. */
  logs(): (LogLine & { run: number })[] {
    return this.runs.flatMap((s, run) => s.logs.map((l) => ({ ...l, run })));
  }

  /** Log lines of the current run only. */
  currentLogs(): LogLine[] {
    return this.served?.logs ?? [];
  }

  async readyz(timeoutMs = 1_000): Promise<Readiness | null> {
    if (this.url === null || !this.running || this.frozen) return null;
    try {
      const res = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
      return (await res.json()) as Readiness;
    } catch {
      return null;
    }
  }

  /** Waits until /readyz reports `role`; returns the readiness seen. */
  async waitRole(role: string, timeoutMs: number): Promise<Readiness> {
    const deadline = Date.now() + timeoutMs;
    let last: Readiness | null = null;
    for (;;) {
      last = await this.readyz();
      if (last?.role === role && last.status === "ready") return last;
      if (Date.now() > deadline) {
        throw new Error(
          `node ${this.name} is not ${role} after ${timeoutMs} ms (last /readyz: ${JSON.stringify(last)})\n${this.logText()}`,
        );
      }
      await sleep(100);
    }
  }

  /** The logs, compact: time, run, level, message and the fields that tell. */
  logText(max = 200): string {
    const lines = this.logs().map((l) => {
      const { time, level, msg, run, pid: _pid, hostname: _h, name: _n, ...rest } = l;
      const t = typeof time === "number" ? new Date(time).toISOString().slice(11, 23) : "";
      const fields = JSON.stringify(rest);
      return `${this.name}#${run} ${t} ${level} ${msg} ${fields.length > 400 ? `${fields.slice(0, 400)}…` : fields}`;
    });
    return lines.slice(-max).join("\n");
  }
}

/** Nodes of one cluster, with temp data directories removed by `cleanup`. */
export class Nodes {
  readonly all: StockdNode[] = [];
  private readonly root: string;

  constructor(readonly config: NodeConfig) {
    this.root = mkdtempSync(join(tmpdir(), "stockd-failover-"));
  }

  add(name: string): StockdNode {
    const dir = join(this.root, name);
    mkdirSync(dir);
    const n = new StockdNode(name, dir, this.config);
    this.all.push(n);
    return n;
  }

  byName(name: string): StockdNode {
    const n = this.all.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
  }

  byUrl(url: string): StockdNode | undefined {
    return this.all.find((n) => n.url === url && n.running);
  }

  /** The running, unfrozen nodes whose /readyz says leader. */
  async leaders(): Promise<StockdNode[]> {
    const seen = await Promise.all(this.all.map(async (n) => [n, await n.readyz()] as const));
    return seen.filter(([, r]) => r?.role === "leader" && r.status === "ready").map(([n]) => n);
  }

  /** Waits for exactly one node to lead. */
  async leader(timeoutMs = 20_000): Promise<StockdNode> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = await this.leaders();
      if (l.length === 1) return l[0]!;
      if (Date.now() > deadline) {
        throw new Error(
          `no single leader after ${timeoutMs} ms (leaders: ${l.map((n) => n.name).join(",") || "none"})\n${this.logText()}`,
        );
      }
      await sleep(100);
    }
  }

  /** Starts the first node, waits until it leads, then the others as followers. */
  async startAll(): Promise<StockdNode> {
    const [first, ...rest] = this.all;
    if (first === undefined) throw new Error("no nodes");
    await first.start();
    await first.waitRole("leader", 30_000);
    await Promise.all(rest.map((n) => n.start()));
    await Promise.all(rest.map((n) => n.waitRole("follower", 30_000)));
    return first;
  }

  logText(max = 200): string {
    const crashes = this.crashes();
    const tail = crashes.length === 0 ? "" : `\ncrashed:\n${crashes.join("\n")}`;
    return this.all.map((n) => n.logText(max)).join("\n") + tail;
  }

  /** Every run of every node that exited without the test stopping it. */
  crashes(): string[] {
    return this.all.flatMap((n) => n.crashes);
  }

  /** Writes each node's full log (pino JSON lines) to `dir` (for reports). */
  saveLogs(dir: string, prefix: string): void {
    mkdirSync(dir, { recursive: true });
    for (const n of this.all) {
      const text = n.runs.flatMap((s, run) => s.logs.map((l) => JSON.stringify({ run, ...l })));
      writeFileSync(join(dir, `${prefix}-${n.name}.log`), `${text.join("\n")}\n`);
    }
  }

  /** SIGKILLs every run still alive (frozen ones too) and removes the data. */
  async cleanup(): Promise<void> {
    await Promise.all(this.all.map((n) => n.kill("SIGKILL").catch(() => undefined)));
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A token for `sub` with `role`, signed with the nodes' secret. */
export async function token(sub: string, role: "admin" | "service" | "customer"): Promise<string> {
  const scratch = mkdtempSync(join(tmpdir(), "stockd-token-"));
  try {
    const r = await cli(["token", "--sub", sub, "--role", role, "--data", scratch], {
      STOCKD_JWT_SECRET: secret,
    });
    if (r.code !== 0) throw new Error(`stockd token failed: ${r.stderr}`);
    return r.stdout.trim();
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

export interface Answer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers by their documented shape
  body: any;
  /** The node that answered. */
  node: string;
  /** performance.now() when the answer arrived. */
  atMs: number;
}

export interface CallOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One HTTP call to one URL; a failure to get an answer is status 0. */
export async function call(
  url: string,
  method: string,
  path: string,
  o: CallOptions = {},
): Promise<{ status: number; body: unknown; error?: string }> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  let body: string | undefined;
  if (o.body !== undefined) {
    body = JSON.stringify(o.body);
    headers["content-type"] = "application/json";
  }
  try {
    const res = await fetch(`${url}${path}`, {
      method,
      headers,
      signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
      ...(body === undefined ? {} : { body }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: res.status, body: parsed };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    return { status: 0, body: null, error: e.cause?.code ?? e.cause?.message ?? e.name };
  }
}

const leaderUrl = /\(HTTP (http:\/\/[^\s,)]+)/;

/**
 * Sends requests to whichever node leads. A request is sent again (same
 * body, same headers: the caller makes it idempotent) after an error that
 * says nothing of its outcome: no answer (refused, reset, timeout), a 5xx or
 * a 429. A 503 naming the leader sends it there next. Returns the first
 * definitive answer (any other status), or throws after `deadlineMs`.
 */
export class Router {
  private guess: string | null = null;
  private turn = 0;
  /** Every 2xx answer to a write: when and from which node. */
  readonly acks: { atMs: number; node: string }[] = [];
  /** Answers that made the router try again, by kind (for the report). */
  readonly retried = new Map<string, number>();
  /** A few samples of 5xx answers other than UNAVAILABLE. */
  readonly samples: string[] = [];

  constructor(
    private readonly nodes: Nodes,
    private readonly requestTimeoutMs = 8_000,
  ) {}

  async send(method: string, path: string, o: CallOptions, deadlineMs = 60_000): Promise<Answer> {
    const deadline = performance.now() + deadlineMs;
    let last = "";
    for (;;) {
      const url = this.target();
      if (url !== null) {
        const r = await call(url, method, path, { timeoutMs: this.requestTimeoutMs, ...o });
        const node = this.nodes.byUrl(url)?.name ?? url;
        const b = r.body as { error?: { code?: string; message?: string } } | null;
        if (r.status !== 0 && r.status < 500 && r.status !== 429) {
          const atMs = performance.now();
          this.guess = url;
          if (r.status < 300 && method !== "GET") this.acks.push({ atMs, node });
          return { status: r.status, body: r.body, node, atMs };
        }
        const kind = r.status === 0 ? `no answer (${r.error})` : `${r.status} ${b?.error?.code}`;
        this.retried.set(kind, (this.retried.get(kind) ?? 0) + 1);
        last = `${node}: ${kind} ${b?.error?.message ?? ""}`;
        if (r.status >= 500 && r.status !== 503 && this.samples.length < 20) {
          this.samples.push(`${method} ${path} -> ${last}`);
        }
        const named = r.status === 503 ? leaderUrl.exec(b?.error?.message ?? "")?.[1] : undefined;
        if (named !== undefined && named !== url && this.nodes.byUrl(named) !== undefined) {
          this.guess = named;
          continue;
        }
        this.guess = null;
      }
      if (performance.now() > deadline) {
        throw new Error(
          `${method} ${path}: no definitive answer in ${deadlineMs} ms (last: ${last})`,
        );
      }
      await sleep(50);
    }
  }

  /** The leader guessed, else the next running node in turn. */
  private target(): string | null {
    const guessed = this.guess === null ? undefined : this.nodes.byUrl(this.guess);
    if (guessed !== undefined && !guessed.frozen) return this.guess;
    const up = this.nodes.all.filter((n) => n.running && !n.frozen && n.url !== null);
    if (up.length === 0) return null;
    this.turn = (this.turn + 1) % up.length;
    return up[this.turn]!.url;
  }
}
