// Worker thread entry for the benchmarks. From TypeScript sources, a worker
// needs tsx's loader registered in its own thread before it imports its module.
import { workerData } from "node:worker_threads";

const target = workerData.module;
if (target.endsWith(".ts")) {
  const { register } = await import("tsx/esm/api");
  register();
}
await import(target);
