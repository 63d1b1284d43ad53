// The runtime: partitions hosted on worker threads with group commit, behind
// one async engine API.
export { Engine, StartupError, type EngineOptions, type EngineStats } from "./engine.ts";
export { PartitionHost } from "./partition_host.ts";
export type { RecoveryReport } from "./protocol.ts";
