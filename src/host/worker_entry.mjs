// Worker thread entry. From TypeScript sources, the worker needs tsx's
// loader registered in its own thread before it imports the worker module.
import { workerData } from "node:worker_threads";

const target = workerData.__module;
if (target.endsWith(".ts")) {
  const { register } = await import("tsx/esm/api");
  register();
}
await import(target);
