// The domain: partitions of actors, commands, events, timer wheel, limits.
// No I/O: time, ids and randomness come in as arguments.
export * from "./types.ts";
export * from "./ids.ts";
export * as limits from "./limits.ts";
export {
  Partition,
  Position,
  Hold,
  HoldFlag,
  type PartitionConfig,
  type RequestRecord,
} from "./partition.ts";
export { TimerWheel, type WheelEntry } from "./wheel.ts";
export { digestPartition, digestPartitions } from "./digest.ts";
export {
  validateAdjust,
  validateFulfil,
  validatePrepare,
  validateReceive,
  validateRelease,
  validateReserve,
} from "./validate.ts";
export { Fifo } from "./fifo.ts";
