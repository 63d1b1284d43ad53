import { type ChildProcess, spawn } from "node:child_process";
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  openSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "nats";

// Real nats-server processes on loopback for tests: one server, or a
// three-node JetStream cluster. Each server has its own store directory and
// config file in a temp directory and logs to `n<i>.log` there.
//
// Durability on nats-server 2.9.10: an acked message has been write()-n to
// the stream's block file (so SIGKILL loses nothing), but files are fsynced
// only every 60 s (raft logs every 5 min) and the config rejects
// `sync_interval` (2.10+): an OS crash, which these tests cannot cause, could
// lose acked writes.

export interface NatsCluster {
  /** `nats://127.0.0.1:PORT` per server; index = server number. */
  urls: string[];
  /** `urls` joined with ",": what a client gets. */
  url: string;
  /** The JetStream meta leader's server name ("n<i>") as server `via`
   * reports it (its monitoring port's /jsz); null while there is none. */
  metaLeader(via: number): Promise<string | null>;
  /** The temp directory holding configs, store dirs and logs. */
  dir: string;
  /** Server i's log so far (all its runs), for failing tests to print. */
  log(i: number): string;
  /** Stops server i (default SIGKILL) and waits for it to exit. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts server i again on the same ports and store dir; waits until it is ready. */
  restart(i: number): Promise<void>;
  /** Kills every server and removes the temp directory. Safe to call twice. */
  stop(): Promise<void>;
}

const readyMs = 15_000;
const fallbackPath = "/usr/sbin/nats-server";

/** nats-server from PATH, else /usr/sbin/nats-server. */
export function natsServerPath(): string {
  const pathDirs = (process.env.PATH ?? "").split(delimiter).filter((d) => d !== "");
  for (const file of [...pathDirs.map((d) => join(d, "nats-server")), fallbackPath]) {
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  throw new Error(
    `nats-server not found on PATH nor at ${fallbackPath}; install it (apt-get install nats-server)`,
  );
}

// Server processes still running and temp dirs not yet removed: on exit the
// servers are killed and the dirs removed, so no test leaves them behind.
const running = new Set<ChildProcess>();
const dirs = new Set<string>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Node {
  index: number;
  port: number;
  monitorPort: number;
  storeDir: string;
  configPath: string;
  logPath: string;
  child: ChildProcess | undefined;
  exited: Promise<void>;
}

export async function startNats(options: { size?: 1 | 3 } = {}): Promise<NatsCluster> {
  const size = options.size ?? 1;
  // Ports are found free and then released, so another process can take one
  // before the server binds it: try again on fresh ports when that happens.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(size);
    } catch (e) {
      if (attempt >= 3 || !String(e).includes("address already in use")) throw e;
    }
  }
}

async function startOnce(size: number): Promise<NatsCluster> {
  const bin = natsServerPath();
  const dir = await mkdtemp(join(tmpdir(), "stockd-nats-"));
  dirs.add(dir);
  const ports = await freePorts(size * 3);
  const nodes: Node[] = [];
  for (let i = 0; i < size; i++) {
    const storeDir = join(dir, `n${i}`);
    await mkdir(storeDir);
    nodes.push({
      index: i,
      port: ports[i * 3]!,
      monitorPort: ports[i * 3 + 1]!,
      storeDir,
      configPath: join(dir, `n${i}.conf`),
      logPath: join(dir, `n${i}.log`),
      child: undefined,
      exited: Promise.resolve(),
    });
  }
  for (const [i, node] of nodes.entries()) {
    const routePort = ports[i * 3 + 2]!;
    const routes = nodes
      .filter((n) => n !== node)
      .map((n) => `"nats-route://127.0.0.1:${ports[n.index * 3 + 2]}"`);
    const cluster =
      size > 1
        ? `cluster {\n  name: "c"\n  listen: "127.0.0.1:${routePort}"\n  routes: [${routes.join(", ")}]\n}\n`
        : "";
    await writeFile(
      node.configPath,
      `server_name: "n${i}"\n` +
        `jetstream {\n  store_dir: "${node.storeDir}"\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}\n` +
        cluster,
    );
  }

  const urls = nodes.map((n) => `nats://127.0.0.1:${n.port}`);

  function launch(node: Node): void {
    const fd = openSync(node.logPath, "a");
    try {
      const child = spawn(
        bin,
        [
          // No -sd: 2.9.10 refuses it next to the config's store_dir ("Duplicate
          // 'store_dir' configuration").
          ...["-c", node.configPath, "-js"],
          ...["-a", "127.0.0.1", "-p", String(node.port), "-m", String(node.monitorPort)],
        ],
        { stdio: ["ignore", fd, fd] },
      );
      node.child = child;
      running.add(child);
      node.exited = new Promise((resolve) => {
        const done = () => {
          running.delete(child);
          if (node.child === child) node.child = undefined;
          resolve();
        };
        child.once("exit", done);
        child.once("error", done); // spawn failure: there is no process to wait for
      });
    } finally {
      closeSync(fd);
    }
  }

  function logTail(node: Node, lines = 40): string {
    if (!existsSync(node.logPath)) return "(no log)";
    return readFileSync(node.logPath, "utf8").split("\n").slice(-lines).join("\n");
  }

  // /healthz?js-enabled-only=true: the server takes connections and has
  // JetStream. Plain /healthz in a cluster also needs this server to know the
  // meta leader, be current with it and have its stream replicas caught up.
  async function waitHealthy(node: Node, deadline: number, query = ""): Promise<void> {
    let last = "no answer";
    for (;;) {
      if (node.child === undefined) {
        throw new Error(`nats-server n${node.index} exited while starting:\n${logTail(node)}`);
      }
      try {
        const res = await fetch(`http://127.0.0.1:${node.monitorPort}/healthz${query}`, {
          signal: AbortSignal.timeout(1000),
        });
        last = `${res.status} ${await res.text()}`;
        if (res.ok) return;
      } catch (e) {
        last = String((e as Error).cause ?? e); // fetch's "fetch failed" hides the reason
      }
      if (Date.now() > deadline) {
        throw new Error(
          `nats-server n${node.index} not ready in ${readyMs} ms (last /healthz: ${last}):\n${logTail(node)}`,
        );
      }
      await sleep(100);
    }
  }

  // The JetStream API answers once a meta leader is elected (503 "JetStream
  // system temporarily unavailable" before).
  async function waitMetaLeader(deadline: number): Promise<void> {
    const nc = await connect({ servers: urls, timeout: 2000 });
    try {
      const jsm = await nc.jetstreamManager({ checkAPI: false, timeout: 2000 });
      for (;;) {
        try {
          await jsm.getAccountInfo();
          return;
        } catch (e) {
          if (Date.now() > deadline) {
            const logs = nodes.map((n) => `--- n${n.index}:\n${logTail(n, 15)}`).join("\n");
            throw new Error(
              `JetStream cluster has no meta leader after ${readyMs} ms: ${e}\n${logs}`,
            );
          }
          await sleep(200);
        }
      }
    } finally {
      await nc.close();
    }
  }

  let stopping: Promise<void> | undefined;
  const h: NatsCluster = {
    urls,
    url: urls.join(","),
    dir,
    log: (i) => readFileSync(nodeAt(i).logPath, "utf8"),
    async metaLeader(via) {
      const res = await fetch(`http://127.0.0.1:${nodeAt(via).monitorPort}/jsz`, {
        signal: AbortSignal.timeout(2000),
      });
      const jsz = (await res.json()) as { meta_cluster?: { leader?: string } };
      return jsz.meta_cluster?.leader || null;
    },
    async kill(i, signal = "SIGKILL") {
      const node = nodeAt(i);
      const child = node.child;
      if (child === undefined) return;
      child.kill(signal);
      // A graceful signal gets 15 s before SIGKILL.
      const timer = setTimeout(() => child.kill("SIGKILL"), readyMs);
      await node.exited;
      clearTimeout(timer);
    },
    async restart(i) {
      const node = nodeAt(i);
      if (node.child !== undefined) throw new Error(`nats-server n${i} is still running`);
      launch(node);
      await waitHealthy(node, Date.now() + readyMs);
    },
    stop() {
      stopping ??= (async () => {
        await Promise.all(nodes.map((_, i) => h.kill(i)));
        await rm(dir, { recursive: true, force: true });
        dirs.delete(dir);
      })();
      return stopping;
    },
  };

  function nodeAt(i: number): Node {
    const node = nodes[i];
    if (node === undefined) throw new Error(`no nats-server ${i} (cluster of ${size})`);
    return node;
  }

  try {
    for (const node of nodes) launch(node);
    const deadline = Date.now() + readyMs;
    for (const node of nodes) await waitHealthy(node, deadline, "?js-enabled-only=true");
    if (size > 1) await waitMetaLeader(deadline);
    for (const node of nodes) await waitHealthy(node, deadline);
  } catch (e) {
    await h.stop();
    throw e;
  }
  return h;
}

/** n distinct ports that were free a moment ago. */
async function freePorts(n: number): Promise<number[]> {
  const servers: NetServer[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", resolve);
      });
      const address = server.address();
      if (address === null || typeof address === "string") throw new Error("no port");
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}
