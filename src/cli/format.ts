import {
  type AdjustmentReason,
  adjustmentReasonNames,
  type Event,
  EventType,
  type Line,
  ReleaseReason,
} from "../engine/index.ts";

// How events look on the command line: one text line for people, one JSON
// object for programs. Enum values appear by name, as in the proto.

export const eventTypeNames: Record<EventType, string> = {
  [EventType.StockReceived]: "STOCK_RECEIVED",
  [EventType.StockAdjusted]: "STOCK_ADJUSTED",
  [EventType.StockReserved]: "STOCK_RESERVED",
  [EventType.ReservationRefused]: "RESERVATION_REFUSED",
  [EventType.HoldReleased]: "HOLD_RELEASED",
  [EventType.HoldFulfilled]: "HOLD_FULFILLED",
  [EventType.HoldConfirmed]: "HOLD_CONFIRMED",
  [EventType.HoldPinned]: "HOLD_PINNED",
  [EventType.HoldUnpinned]: "HOLD_UNPINNED",
};

export const releaseReasonNames: Record<ReleaseReason, string> = {
  [ReleaseReason.Released]: "RELEASED",
  [ReleaseReason.Expired]: "EXPIRED",
  [ReleaseReason.Aborted]: "ABORTED",
};

function nameOf(names: Record<number, string>, value: number): string {
  return names[value] ?? `UNKNOWN_${value}`;
}

/** ISO-8601 in UTC; a time outside the Date range is shown as its number. */
export function isoTime(timeMs: number): string {
  const d = new Date(timeMs);
  return Number.isNaN(d.getTime()) ? String(timeMs) : d.toISOString();
}

function linesText(lines: Line[]): string {
  return lines.map((l) => `${l.productId}@${l.warehouseId} x${l.quantity}`).join(",");
}

/** `p=3 seq=17 2026-11-23T10:00:00.000Z STOCK_RESERVED hold=17411 ...` */
export function eventText(partition: number, e: Event): string {
  const head = `p=${partition} seq=${e.seq} ${isoTime(e.timeMs)} ${nameOf(eventTypeNames, e.type)}`;
  switch (e.type) {
    case EventType.StockReceived:
      return `${head} position=${e.productId}@${e.warehouseId} quantity=${e.quantity}`;
    case EventType.StockAdjusted:
      return `${head} position=${e.productId}@${e.warehouseId} delta=${e.delta} reason=${nameOf(adjustmentReasonNames, e.reason)}`;
    case EventType.StockReserved: {
      const request = e.requestId === "" ? "" : ` request=${e.requestId}`;
      const prepared = e.prepared ? " prepared" : "";
      return `${head} hold=${e.holdId} expires=${isoTime(e.expireTimeMs)} lines=${linesText(e.lines)}${request}${prepared}`;
    }
    case EventType.ReservationRefused:
      return `${head} request=${e.requestId} line=${e.lineIndex} available=${e.available}`;
    case EventType.HoldReleased:
      return `${head} hold=${e.holdId} reason=${nameOf(releaseReasonNames, e.reason)}`;
    case EventType.HoldFulfilled:
      return `${head} hold=${e.holdId} quantities=${e.quantities.join(",")}`;
    case EventType.HoldConfirmed:
    case EventType.HoldPinned:
    case EventType.HoldUnpinned:
      return `${head} hold=${e.holdId}`;
    default:
      return `${head} ${otherFields(e)}`;
  }
}

/** An event kind this build does not know by name: its fields as they are. */
function otherFields(e: Event): string {
  return Object.entries(e)
    .filter(([k]) => k !== "type" && k !== "seq" && k !== "timeMs")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join(" ");
}

/** Every field of an event, with its partition, its batch's epoch, and
 * times both as milliseconds and as ISO-8601. */
export function eventJson(partition: number, epoch: number, e: Event): Record<string, unknown> {
  const head = {
    partition,
    seq: e.seq,
    timeMs: e.timeMs,
    time: isoTime(e.timeMs),
    type: nameOf(eventTypeNames, e.type),
    epoch,
  };
  switch (e.type) {
    case EventType.StockReceived:
      return { ...head, productId: e.productId, warehouseId: e.warehouseId, quantity: e.quantity };
    case EventType.StockAdjusted:
      return {
        ...head,
        productId: e.productId,
        warehouseId: e.warehouseId,
        delta: e.delta,
        reason: nameOf(adjustmentReasonNames, e.reason as AdjustmentReason),
      };
    case EventType.StockReserved:
      return {
        ...head,
        holdId: e.holdId,
        expireTimeMs: e.expireTimeMs,
        expireTime: isoTime(e.expireTimeMs),
        requestId: e.requestId,
        lines: e.lines,
        prepared: e.prepared,
      };
    case EventType.ReservationRefused:
      return { ...head, requestId: e.requestId, lineIndex: e.lineIndex, available: e.available };
    case EventType.HoldReleased:
      return { ...head, holdId: e.holdId, reason: nameOf(releaseReasonNames, e.reason) };
    case EventType.HoldFulfilled:
      return { ...head, holdId: e.holdId, quantities: e.quantities };
    case EventType.HoldConfirmed:
    case EventType.HoldPinned:
    case EventType.HoldUnpinned:
      return { ...head, holdId: e.holdId };
    default:
      return { ...(e as object), ...head };
  }
}
