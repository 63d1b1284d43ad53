// Every queue, batch and loop in stockd has an upper bound, named here with
// the reason for its number. A full queue rejects; nothing grows without bound.

/** Partitions a data directory may have. Hold ids encode the partition in the
 * low 10 bits (`holdId = seq * 1024 + partition`), so this cannot grow. */
export const partitionCountMax = 1024;

/** Default partitions for a new data directory: up to 16 workers (one
 * gateway thread feeds a few at most: a worker reserves millions a second,
 * the gateway tens of thousands), and few enough that a group commit over
 * many products carries many events per partition. Each partition a commit
 * touches is one LMDB record and, replicated, one JetStream publish: with 16
 * instead of 64, single reservations over 10,000 SKUs ran 16-57% faster
 * replicated at 29-43% less CPU each; fsync mode within the noise (README). */
export const partitionCountDefault = 16;

/** Units in one command. Far above any real order line. */
export const quantityMax = 1_000_000_000;

/** Units any total of one position may reach (received, |adjusted|,
 * available + reserved). Far beyond any warehouse, and far below 2^53, so
 * every total stays an exact double: a receipt or adjustment past it is
 * refused CAPACITY_EXCEEDED rather than rounded. */
export const unitTotalMax = 1_000_000_000_000_000;

/** Lines in one reservation. A cart larger than this is a bug or an attack. */
export const lineCountMax = 100;

/** Characters in a product, warehouse or request id. */
export const idLengthMax = 128;

/** Longest hold a caller may ask for: 30 days. */
export const holdDurationMsMax = 30 * 24 * 3600 * 1000;

/** Default hold duration: 15 minutes, as in the order lifecycle. */
export const holdDurationMsDefault = 15 * 60 * 1000;

/** How long request ids (idempotency keys) and ended holds are remembered. */
export const idempotencyWindowMsDefault = 24 * 3600 * 1000;

/** Remembered request ids per partition, whatever the window: bounds memory
 * when a burst of keyed requests arrives faster than the window drains. */
export const requestCountMax = 1_000_000;

/** Remembered ended holds per partition, whatever the window: 40 bytes
 * each. Past it the oldest are forgotten first (a late release of one then
 * answers HOLD_NOT_FOUND rather than HOLD_RELEASED/EXPIRED/FULFILLED). A
 * larger map also costs cache misses on every close. */
export const closedHoldCountMax = 262_144;

/** Open holds per partition. About 150 MB of memory at the limit. */
export const holdCountMax = 4_000_000;

/** SKU positions per partition. About 200 MB of memory at the limit. */
export const positionCountMax = 4_000_000;

/** Timer wheel: slot width. A hold outlives its deadline by at most one tick
 * plus one journal commit. */
export const wheelTickMsDefault = 10;

/** Timer wheel: slots (a power of two). 4096 x 10 ms spans 41 s; longer
 * deadlines wait in their slot for further revolutions. */
export const wheelSlotCount = 4096;

/** Holds expired by one pulse of one partition. Expiry is a bounded internal
 * pulse so that a backlog (a node down for an hour) cannot stall
 * reservations; the rest expire on the next pulses. */
export const expireCountMaxPerPulse = 4096;

/** Commands queued for one worker before new ones are refused with
 * RESOURCE_EXHAUSTED. At ~300k commands/s this is a few hundred ms of work. */
export const workerQueueCountMax = 100_000;

/** Commands per message to a worker: bounds the structured-clone cost of one
 * postMessage and the time a worker spends before it yields. */
export const workerBatchCountMax = 8192;

/** Events that start a journal transaction while a command batch is still
 * running (when none is in flight): the sync then overlaps the rest of the
 * batch instead of following it. Small enough to start early, large enough
 * that a transaction carries many events. */
export const commitEarlyEventCount = 512;

/** Events per journal batch. Bounds one LMDB value and one transaction. */
export const journalBatchEventCountMax = 65_536;

/** Bytes of encoding buffer a partition keeps between journal batches
 * (BatchEncoder): a batch of a few thousand events fits, so a steady load
 * allocates none; a larger burst's buffer is dropped after its batch, so 64
 * partitions keep at most 16 MiB per worker. */
export const journalEncoderKeptBytesMax = 256 * 1024;

/** Events per replicated journal batch: one batch is one JetStream message,
 * and NATS refuses a payload over 1 MiB by default; a reserve event is under
 * 100 bytes encoded, so 4,096 of them stay under half of it. */
export const replicatedBatchEventCountMax = 4_096;

/** Events between background snapshots of a partition. */
export const snapshotIntervalEventCountDefault = 1_000_000;
