// Persistence: the journal and snapshots in LMDB, their codec, recovery.

export {
  type Batch,
  BatchEncoder,
  ChecksumError,
  decodeBatch,
  decodeSnapshot,
  encodeBatch,
  encodeSnapshot,
  type FramedBatch,
  frame,
  unframe,
} from "./codec.ts";
export { RecordKind, type RecordReplica, RecordStore, type RecordWrite } from "./records.ts";
export {
  type Recovered,
  type RecoverOptions,
  recoverPartition,
  snapshotPartition,
} from "./recovery.ts";
export {
  type CoordinatorReplica,
  CorruptionError,
  DataDirError,
  type Durability,
  type JournalRecord,
  Store,
  type StoreMeta,
  UnavailableError,
} from "./store.ts";
export { Reader, WireError, Writer } from "./wire.ts";
