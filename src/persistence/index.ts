// Persistence: the journal and snapshots in LMDB, their codec, recovery.
export {
  Store,
  CorruptionError,
  DataDirError,
  type Durability,
  type StoreMeta,
  type JournalRecord,
} from "./store.ts";
export {
  type Batch,
  ChecksumError,
  encodeBatch,
  decodeBatch,
  encodeSnapshot,
  decodeSnapshot,
  frame,
  unframe,
} from "./codec.ts";
export { recoverPartition, snapshotPartition, type Recovered, type RecoverOptions } from "./recovery.ts";
export { Reader, Writer, WireError } from "./wire.ts";
