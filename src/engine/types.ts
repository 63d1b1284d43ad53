// The engine's vocabulary: commands, events, results. Plain data, no I/O.

/** Event kinds; the numbers are the `Event.kind` field numbers in
 * proto/stockd/v1/journal.proto, so the codec can use them directly. */
export const EventType = {
  StockReceived: 10,
  StockAdjusted: 11,
  StockReserved: 12,
  ReservationRefused: 13,
  HoldReleased: 14,
  HoldFulfilled: 15,
  HoldConfirmed: 16,
  HoldPinned: 17,
  HoldUnpinned: 18,
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export const AdjustmentReason = {
  CountCorrection: 1,
  Damage: 2,
  Return: 3,
  Loss: 4,
  Found: 5,
} as const;
export type AdjustmentReason = (typeof AdjustmentReason)[keyof typeof AdjustmentReason];

export const adjustmentReasonNames: Record<AdjustmentReason, string> = {
  1: "COUNT_CORRECTION",
  2: "DAMAGE",
  3: "RETURN",
  4: "LOSS",
  5: "FOUND",
};

export const ReleaseReason = {
  Released: 1,
  Expired: 2,
  Aborted: 3,
} as const;
export type ReleaseReason = (typeof ReleaseReason)[keyof typeof ReleaseReason];

/** How a hold ended (snapshot `HoldOutcome`). */
export const HoldOutcome = {
  Released: 1,
  Expired: 2,
  Aborted: 3,
  Fulfilled: 4,
} as const;
export type HoldOutcome = (typeof HoldOutcome)[keyof typeof HoldOutcome];

export interface Line {
  productId: string;
  warehouseId: string;
  quantity: number;
}

interface EventBase {
  seq: number;
  timeMs: number;
}

export interface StockReceived extends EventBase {
  type: typeof EventType.StockReceived;
  productId: string;
  warehouseId: string;
  quantity: number;
}
export interface StockAdjusted extends EventBase {
  type: typeof EventType.StockAdjusted;
  productId: string;
  warehouseId: string;
  delta: number;
  reason: AdjustmentReason;
}
export interface StockReserved extends EventBase {
  type: typeof EventType.StockReserved;
  holdId: number;
  expireTimeMs: number;
  requestId: string;
  lines: Line[];
  /** Part of a reservation spanning partitions, awaiting the decision. */
  prepared: boolean;
}
export interface ReservationRefused extends EventBase {
  type: typeof EventType.ReservationRefused;
  requestId: string;
  lineIndex: number;
  available: number;
  /** The lines as asked, so that a reuse with other lines is recognised. */
  lines: Line[];
}
export interface HoldReleased extends EventBase {
  type: typeof EventType.HoldReleased;
  holdId: number;
  reason: ReleaseReason;
}
export interface HoldFulfilled extends EventBase {
  type: typeof EventType.HoldFulfilled;
  holdId: number;
  quantities: number[];
}

/** HoldConfirmed, HoldPinned, HoldUnpinned: a hold id and nothing else. */
export interface HoldMarked extends EventBase {
  type:
    | typeof EventType.HoldConfirmed
    | typeof EventType.HoldPinned
    | typeof EventType.HoldUnpinned;
  holdId: number;
}

export type Event =
  | HoldMarked
  | StockReceived
  | StockAdjusted
  | StockReserved
  | ReservationRefused
  | HoldReleased
  | HoldFulfilled;

/** Commands, as they arrive from a caller (not yet validated). */
export interface ReceiveStock {
  productId: string;
  warehouseId: string;
  quantity: number;
}
export interface AdjustStock {
  productId: string;
  warehouseId: string;
  delta: number;
  reason: AdjustmentReason;
}
export interface ReserveStock {
  lines: Line[];
  /** Idempotency key: the same key returns the first answer. */
  requestId?: string;
  holdDurationMs?: number;
}
export interface ReleaseHold {
  holdId: number;
}
/** One partition's part of a reservation spanning partitions. */
export interface PrepareHold {
  lines: Line[];
  /** Absolute deadline, the same in every partition taking part. */
  expireTimeMs: number;
}
export interface FulfilHold {
  holdId: number;
  /** Units to fulfil per line; absent means every unit. */
  quantities?: number[];
}

/** Error codes: one catalogue for the whole engine. The gateway maps each to
 * one gRPC status and one HTTP status. */
export const ErrorCode = {
  InvalidArgument: "INVALID_ARGUMENT",
  OutOfStock: "OUT_OF_STOCK",
  InsufficientStock: "INSUFFICIENT_STOCK",
  HoldNotFound: "HOLD_NOT_FOUND",
  HoldReleased: "HOLD_RELEASED",
  HoldExpired: "HOLD_EXPIRED",
  HoldAborted: "HOLD_ABORTED",
  HoldFulfilled: "HOLD_FULFILLED",
  RequestIdReused: "REQUEST_ID_REUSED",
  CapacityExceeded: "CAPACITY_EXCEEDED",
  Overloaded: "OVERLOADED",
  Unavailable: "UNAVAILABLE",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface Failure {
  ok: false;
  code: ErrorCode;
  message: string;
  /** For OUT_OF_STOCK: the first line that could not be held. */
  lineIndex?: number;
  /** For OUT_OF_STOCK / INSUFFICIENT_STOCK: units available for that line. */
  available?: number;
}

export interface PositionView {
  productId: string;
  warehouseId: string;
  available: number;
  reserved: number;
  /** Units ever received. */
  received: number;
  /** Sum of every adjustment (signed). */
  adjusted: number;
  /** Units ever fulfilled. */
  fulfilled: number;
}

/** A hold as a reader sees it: open, or how it ended (within the window). */
export type HoldView =
  | {
      holdId: number;
      status: "OPEN";
      expireTimeMs: number;
      requestId: string;
      lines: Line[];
      prepared: boolean;
      pinned: boolean;
    }
  | {
      holdId: number;
      status: "RELEASED" | "EXPIRED" | "ABORTED" | "FULFILLED";
      closeTimeMs: number;
    };

export interface Reservation {
  holdId: number;
  expireTimeMs: number;
  lines: Line[];
  /** True when this answer is the remembered answer to an earlier request. */
  replayed: boolean;
}

export interface HoldEnded {
  holdId: number;
  outcome: HoldOutcome;
}

export type Result<T> = ({ ok: true } & T) | Failure;

export type ReceiveResult = Result<{ position: PositionView }>;
export type AdjustResult = Result<{ position: PositionView }>;
export type ReserveResult = Result<{ reservation: Reservation }>;
export type ReleaseResult = Result<{ holdId: number }>;
export type FulfilResult = Result<{ holdId: number; quantities: number[] }>;

export function fail(code: ErrorCode, message: string, extra?: Partial<Failure>): Failure {
  return { ok: false, code, message, ...extra };
}
