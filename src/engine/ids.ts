import { idLengthMax, partitionCountMax } from "./limits.ts";

/** Ids are printable ASCII without spaces (0x21..0x7e): safe in keys, logs
 * and URLs. */
function isPrintableAscii(id: string): boolean {
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

export function idError(what: string, id: unknown): string | null {
  if (typeof id !== "string") return `${what} must be a string`;
  if (id.length === 0) return `${what} must not be empty`;
  if (id.length > idLengthMax) return `${what} is longer than ${idLengthMax} characters`;
  if (!isPrintableAscii(id)) return `${what} must be printable ASCII without spaces`;
  return null;
}

/**
 * Stable partition of a product: FNV-1a over the id's UTF-16 code units.
 * Never change this function: partitions are fixed per data directory.
 */
export function partitionOf(productId: string, partitionCount: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < productId.length; i++) {
    h ^= productId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitionCount;
}

/** Hold ids carry their partition in the low bits: seq * 1024 + partition. */
export function holdIdOf(seq: number, partition: number): number {
  return seq * partitionCountMax + partition;
}

export function partitionOfHold(holdId: number): number {
  return holdId % partitionCountMax;
}

export function isHoldId(holdId: unknown): holdId is number {
  return typeof holdId === "number" && Number.isSafeInteger(holdId) && holdId >= partitionCountMax;
}

/** Position key: the two ids cannot contain a space, so one joins them. */
export function positionKey(productId: string, warehouseId: string): string {
  return `${productId} ${warehouseId}`;
}
