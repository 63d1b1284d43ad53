import { createHash } from "node:crypto";
import type { Partition } from "./partition.ts";

/**
 * A hash of a partition's whole state: every position, open hold, ended hold
 * and remembered request, in a canonical order. Two partitions with the same
 * digest are the same state; replay tests compare digests.
 */
export function digestPartition(p: Partition): string {
  const h = createHash("sha256");
  h.update(`partition ${p.id}/${p.partitionCount} seq ${p.seq} time ${p.timeMs}\n`);
  for (const x of p.positionsInOrder()) {
    h.update(
      `P ${x.productId} ${x.warehouseId} ${x.available} ${x.reserved} ${x.received} ${x.adjusted} ${x.fulfilled}\n`,
    );
  }
  for (const x of p.holdsInOrder()) {
    h.update(`H ${x.id} ${x.expireTimeMs} ${x.flags} ${x.requestId}`);
    for (const l of x.lines) h.update(` ${l.productId} ${l.warehouseId} ${l.quantity}`);
    h.update("\n");
  }
  for (const c of p.closedInOrder()) h.update(`C ${c.holdId} ${c.outcome} ${c.closeTimeMs}\n`);
  for (const r of p.requestsInOrder()) {
    h.update(
      `R ${r.requestId} ${r.timeMs} ${r.holdId} ${r.expireTimeMs} ${r.lineIndex} ${r.available}`,
    );
    for (const l of r.lines) h.update(` ${l.productId} ${l.warehouseId} ${l.quantity}`);
    h.update("\n");
  }
  return h.digest("hex");
}

/** Digest of many partitions (a whole engine), in partition order. */
export function digestPartitions(ps: Iterable<Partition>): string {
  const h = createHash("sha256");
  for (const p of [...ps].sort((a, b) => a.id - b.id)) h.update(digestPartition(p));
  return h.digest("hex");
}
