// The runtime: partitions hosted on worker threads with group commit, behind
// one async engine API.

export { randomHashSeed } from "./boot.ts";
export { Engine, type EngineOptions, type EngineStats, StartupError } from "./engine.ts";
export { PartitionHost } from "./partition_host.ts";
export {
  commitMsBounds,
  type LoopLag,
  type PublishItem,
  type RecoveryReport,
} from "./protocol.ts";
