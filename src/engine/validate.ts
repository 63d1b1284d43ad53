import { idError, isHoldId, positionKey } from "./ids.ts";
import { holdDurationMsMax, lineCountMax, quantityMax } from "./limits.ts";
import {
  AdjustmentReason,
  type AdjustStock,
  ErrorCode,
  type Failure,
  type FulfilHold,
  fail,
  type PrepareHold,
  type ReceiveStock,
  type ReleaseHold,
  type ReserveStock,
} from "./types.ts";

// Validation of commands as they arrive from callers. A bad command gets a
// clear INVALID_ARGUMENT and changes nothing.

const reasons = new Set<number>(Object.values(AdjustmentReason));

function invalid(message: string): Failure {
  return fail(ErrorCode.InvalidArgument, message);
}

function quantityError(what: string, q: unknown, min: number): string | null {
  if (typeof q !== "number" || !Number.isInteger(q)) return `${what} must be an integer`;
  if (q < min) return `${what} must be at least ${min}`;
  if (q > quantityMax) return `${what} must be at most ${quantityMax}`;
  return null;
}

function positionError(productId: unknown, warehouseId: unknown): string | null {
  return idError("productId", productId) ?? idError("warehouseId", warehouseId);
}

function isObject(cmd: unknown): cmd is Record<string, unknown> {
  return typeof cmd === "object" && cmd !== null;
}

export function validateReceive(cmd: ReceiveStock): Failure | null {
  if (!isObject(cmd)) return invalid("command must be an object");
  const e =
    positionError(cmd.productId, cmd.warehouseId) ?? quantityError("quantity", cmd.quantity, 1);
  return e === null ? null : invalid(e);
}

export function validateAdjust(cmd: AdjustStock): Failure | null {
  if (!isObject(cmd)) return invalid("command must be an object");
  const e = positionError(cmd.productId, cmd.warehouseId);
  if (e !== null) return invalid(e);
  const d = cmd.delta;
  if (typeof d !== "number" || !Number.isInteger(d)) return invalid("delta must be an integer");
  if (d === 0) return invalid("delta must not be zero");
  if (Math.abs(d) > quantityMax) return invalid(`delta must be within ±${quantityMax}`);
  if (!reasons.has(cmd.reason)) return invalid("reason must be a known adjustment reason");
  return null;
}

export function validateReserve(cmd: ReserveStock): Failure | null {
  if (!isObject(cmd)) return invalid("command must be an object");
  const lines = cmd.lines;
  if (!Array.isArray(lines) || lines.length === 0) return invalid("lines must not be empty");
  if (lines.length > lineCountMax) return invalid(`at most ${lineCountMax} lines`);
  // One line (the common case) cannot repeat itself: skip the set.
  const seen = lines.length > 1 ? new Set<string>() : null;
  for (let i = 0; i < lines.length; i++) {
    const line: unknown = lines[i];
    if (!isObject(line)) return invalid(`lines[${i}] must be an object`);
    const e =
      positionError(line.productId, line.warehouseId) ??
      quantityError("quantity", line.quantity, 1);
    if (e !== null) return invalid(`lines[${i}]: ${e}`);
    if (seen !== null) {
      const key = positionKey(line.productId as string, line.warehouseId as string);
      if (seen.has(key)) return invalid(`lines[${i}] repeats a product and warehouse`);
      seen.add(key);
    }
  }
  if (cmd.requestId !== undefined) {
    const e = idError("requestId", cmd.requestId);
    if (e !== null) return invalid(e);
  }
  if (cmd.holdDurationMs !== undefined) {
    const h = cmd.holdDurationMs;
    if (typeof h !== "number" || !Number.isInteger(h) || h < 1 || h > holdDurationMsMax) {
      return invalid(`holdDurationMs must be an integer from 1 to ${holdDurationMsMax}`);
    }
  }
  return null;
}

export function validatePrepare(cmd: PrepareHold): Failure | null {
  if (!isObject(cmd)) return invalid("command must be an object");
  const e = validateReserve({ lines: cmd.lines });
  if (e !== null) return e;
  const t = cmd.expireTimeMs;
  if (typeof t !== "number" || !Number.isSafeInteger(t) || t <= 0) {
    return invalid("expireTimeMs must be a positive integer");
  }
  return null;
}

export function validateRelease(cmd: ReleaseHold): Failure | null {
  if (!isObject(cmd)) return invalid("command must be an object");
  return isHoldId(cmd.holdId) ? null : invalid("holdId must be a hold id");
}

export function validateFulfil(cmd: FulfilHold): Failure | null {
  if (!isObject(cmd)) return invalid("command must be an object");
  if (!isHoldId(cmd.holdId)) return invalid("holdId must be a hold id");
  if (cmd.quantities !== undefined) {
    if (!Array.isArray(cmd.quantities)) return invalid("quantities must be an array");
    for (let i = 0; i < cmd.quantities.length; i++) {
      const e = quantityError(`quantities[${i}]`, cmd.quantities[i], 0);
      if (e !== null) return invalid(e);
    }
  }
  return null;
}
