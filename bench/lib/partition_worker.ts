// One worker thread of the all-cores run: builds its own Partition, says it
// is ready, waits for the start signal, runs the loop and reports.

import { parentPort, workerData } from "node:worker_threads";
import { type LoopOptions, runPartitionLoop } from "./partition_loop.ts";

export interface PartitionWorkerData {
  module: string;
  options: LoopOptions;
}

export type FromPartitionWorker =
  | { t: "ready" }
  | { t: "done"; result: ReturnType<typeof runPartitionLoop> }
  | { t: "failed"; message: string };

const port = parentPort!;
const data = workerData as PartitionWorkerData;

port.once("message", () => {
  try {
    const result = runPartitionLoop(data.options);
    port.postMessage({ t: "done", result } satisfies FromPartitionWorker);
  } catch (err) {
    port.postMessage({
      t: "failed",
      message: (err as Error).message,
    } satisfies FromPartitionWorker);
  }
  port.close();
});
port.postMessage({ t: "ready" } satisfies FromPartitionWorker);
