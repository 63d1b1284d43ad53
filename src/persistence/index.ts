// Persistence: the journal and snapshots in LMDB, their codec, recovery.

export {
  type Batch,
  ChecksumError,
  decodeBatch,
  decodeSnapshot,
  encodeBatch,
  encodeSnapshot,
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
  type FramedBatch,
  framed,
  type JournalRecord,
  Store,
  type StoreMeta,
  UnavailableError,
} from "./store.ts";
export { Reader, WireError, Writer } from "./wire.ts";
