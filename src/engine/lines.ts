import { ErrorCode, type Failure, fail, type Line } from "./types.ts";

// Lines of a reservation: the helpers the partition and the coordinator share.

export function copyLines(lines: Line[]): Line[] {
  return lines.map((l) => ({
    productId: l.productId,
    warehouseId: l.warehouseId,
    quantity: l.quantity,
  }));
}

export function sameLines(a: Line[], b: Line[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (
      x.productId !== y.productId ||
      x.warehouseId !== y.warehouseId ||
      x.quantity !== y.quantity
    ) {
      return false;
    }
  }
  return true;
}

/** The OUT_OF_STOCK answer naming the first line that could not be held. */
export function outOfStock(lineIndex: number, available: number, line: Line): Failure {
  return fail(
    ErrorCode.OutOfStock,
    `line ${lineIndex}: ${line.quantity} of ${line.productId} in ${line.warehouseId} requested, ${available} available`,
    { lineIndex, available },
  );
}
