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
export { RecordKind, RecordStore, type RecordWrite } from "./records.ts";
export {
  type Recovered,
  type RecoverOptions,
  recoverPartition,
  snapshotPartition,
} from "./recovery.ts";
export {
  CorruptionError,
  DataDirError,
  type Durability,
  type JournalRecord,
  Store,
  type StoreMeta,
} from "./store.ts";
export { Reader, WireError, Writer } from "./wire.ts";
