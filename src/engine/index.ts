// The domain: partitions of actors, commands, events, timer wheel, limits.
// No I/O: time, ids and randomness come in as arguments.

export { digestPartition, digestPartitions } from "./digest.ts";
export { Fifo } from "./fifo.ts";
export * from "./ids.ts";
export * as limits from "./limits.ts";
export { copyLines, outOfStock, sameLines } from "./lines.ts";
export {
  HoldFlag,
  type OpenHold,
  Partition,
  type PartitionConfig,
  Position,
  type RequestRecord,
} from "./partition.ts";
export * from "./types.ts";
export {
  validateAdjust,
  validateFulfil,
  validatePrepare,
  validateReceive,
  validateRelease,
  validateReserve,
} from "./validate.ts";
export { TimerWheel, type WheelEntries } from "./wheel.ts";
