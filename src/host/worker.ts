import { monitorEventLoopDelay } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import { CorruptionError, type FramedBatch } from "../persistence/index.ts";
import { bootHost } from "./boot.ts";
import {
  type FromWorker,
  type LoopLag,
  loopLagWindowMs,
  loopSamplingMs,
  type SerializedError,
  type ToWorker,
  type WorkerConfig,
} from "./protocol.ts";
import { forPost } from "./transport.ts";

// A worker thread: hosts a set of partitions, takes command batches from the
// main thread, answers in batches once durable, and runs the expiry pulse.

const port = parentPort!;
const config = workerData as WorkerConfig;

function post(msg: FromWorker): void {
  port.postMessage(msg);
}

function serialize(err: unknown): SerializedError {
  const e = err as Error;
  const out: SerializedError = { name: e.name ?? "Error", message: e.message ?? String(err) };
  if (err instanceof CorruptionError) {
    out.partition = err.partition;
    out.seq = err.seq;
    out.lastGoodSeq = err.lastGoodSeq;
  }
  return out;
}

// Replicated batches go to the main thread, which publishes them; each
// publish is answered by id.
const publishing = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
let publishId = 0;
function replicate(batches: FramedBatch[]): Promise<void> {
  const id = ++publishId;
  return new Promise<void>((resolve, reject) => {
    publishing.set(id, { resolve, reject });
    post({ t: "publish", id, items: batches });
  });
}
port.on("message", (msg: ToWorker) => {
  if (msg.t !== "published") return;
  const p = publishing.get(msg.id);
  publishing.delete(msg.id);
  if (msg.error === undefined) p?.resolve();
  else p?.reject(new Error(msg.error));
});

try {
  const { host, store, recovered } = await bootHost(
    config,
    Date.now,
    (count, results) => {
      const { flat, transfer } = forPost(results);
      port.postMessage({ t: "replies", count, results: flat } satisfies FromWorker, transfer);
    },
    (err) => post({ t: "fatal", error: serialize(err) }),
    config.replicated ? replicate : undefined,
  );
  // The event loop's lateness: samples are intervals, so the lag is what
  // exceeds the sampling interval.
  const loop = monitorEventLoopDelay({ resolution: loopSamplingMs });
  loop.enable();
  let lastLag: LoopLag | null = null;
  const lagWindow = setInterval(() => {
    const late = (ns: number) => Math.max(0, ns / 1e6 - loopSamplingMs);
    lastLag = { p99Ms: late(loop.percentile(99)), maxMs: late(loop.max) };
    loop.reset();
  }, config.loopLagWindowMs ?? loopLagWindowMs);
  host.loopLag = () => lastLag;
  let pulse = config.follower ? null : setInterval(() => host.pulse(), config.wheelTickMs);
  port.on("message", (msg: ToWorker) => {
    if (msg.t === "cmds") {
      host.execute(msg.ops, msg.args);
      return;
    }
    if (msg.t === "promote") {
      void host.promote(msg.epochs, replicate).then((expired) => {
        pulse ??= setInterval(() => host.pulse(), config.wheelTickMs);
        post({ t: "promoted", expired });
      });
      return;
    }
    if (msg.t !== "close") return;
    if (pulse !== null) clearInterval(pulse);
    clearInterval(lagWindow);
    loop.disable();
    void host
      .close()
      .then(() => store.close())
      .then(() => {
        post({ t: "closed" });
        port.close();
      });
  });
  post({ t: "ready", recovered });
} catch (err) {
  post({ t: "fatal", error: serialize(err) });
  port.close();
}
