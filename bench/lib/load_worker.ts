// A load generator in a worker thread of its own, so that the calling
// thread only hears the phase marks and the result (and stays free to
// sample the servers). Shared by bench/lib/grpc_load.ts and http_load.ts:
// each calls runInWorker from the caller's side and serveInWorker at its
// module's top level, under its own key.

import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

/** The start of the measured window, and its end. */
export type PhaseMark = "measure" | "drain";

type FromLoadWorker<R> =
  | { t: "phase"; mark: PhaseMark }
  | { t: "done"; result: R }
  | { t: "failed"; message: string };

/** Runs the load `moduleUrl` serves under `key` (see serveInWorker) in a
 * new worker thread, entered through worker_entry.mjs. */
export function runInWorker<O, R>(
  moduleUrl: string,
  key: string,
  options: O,
  onPhase: (mark: PhaseMark) => void,
): Promise<R> {
  const entry = new URL("./worker_entry.mjs", import.meta.url);
  return new Promise((resolve, reject) => {
    const worker = new Worker(entry, { workerData: { module: moduleUrl, [key]: options } });
    worker.on("error", reject);
    worker.on("message", (msg: FromLoadWorker<R>) => {
      if (msg.t === "phase") {
        onPhase(msg.mark);
        return;
      }
      if (msg.t === "failed") reject(new Error(`load generator: ${msg.message}`));
      else resolve(msg.result);
      // A client may still hold handles (closed channels, sockets): they
      // must keep neither the thread nor the benchmark alive.
      void worker.terminate();
    });
    worker.on("exit", (code) =>
      reject(new Error(`load generator worker exited (${code}) without a result`)),
    );
  });
}

/** In a worker started by runInWorker with `key`: runs the load on its
 * options and reports to the caller. Elsewhere it does nothing. */
export function serveInWorker<O, R>(
  key: string,
  run: (options: O, onPhase: (mark: PhaseMark) => void) => Promise<R>,
): void {
  const options = (workerData as Record<string, unknown> | null)?.[key];
  if (isMainThread || options === undefined) return;
  const port = parentPort!;
  const post = (msg: FromLoadWorker<R>) => port.postMessage(msg);
  run(options as O, (mark) => post({ t: "phase", mark }))
    .then((result) => post({ t: "done", result }))
    .catch((err: unknown) => post({ t: "failed", message: (err as Error).message }));
}
