import { status as GrpcStatus } from "@grpc/grpc-js";
import { ErrorCode } from "../engine/index.ts";

// One catalogue of the codes a caller can see, and the one table that maps
// each to a gRPC status and an HTTP status. Both transports answer every
// error with the same code: `error.code` in the HTTP body, ErrorInfo.reason
// in the gRPC status details.

export const ApiCode = {
  // Every engine refusal reaches the caller under its own code.
  ...ErrorCode,
  PayloadTooLarge: "PAYLOAD_TOO_LARGE",
  UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
  Unauthenticated: "UNAUTHENTICATED",
  PermissionDenied: "PERMISSION_DENIED",
  NotFound: "NOT_FOUND",
  MethodNotAllowed: "METHOD_NOT_ALLOWED",
  CurrencyMismatch: "CURRENCY_MISMATCH",
  CartEmpty: "CART_EMPTY",
  CartLocked: "CART_LOCKED",
  OrderExpired: "ORDER_EXPIRED",
  OrderCancelled: "ORDER_CANCELLED",
  OrderAlreadyPaid: "ORDER_ALREADY_PAID",
  Internal: "INTERNAL",
} as const;
export type ApiCode = (typeof ApiCode)[keyof typeof ApiCode];

interface Mapping {
  grpc: GrpcStatus;
  http: number;
}

const conflict: Mapping = { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409 };

export const statusOf: Record<ApiCode, Mapping> = {
  INVALID_ARGUMENT: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  PAYLOAD_TOO_LARGE: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 413 },
  UNSUPPORTED_MEDIA_TYPE: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 415 },
  UNAUTHENTICATED: { grpc: GrpcStatus.UNAUTHENTICATED, http: 401 },
  PERMISSION_DENIED: { grpc: GrpcStatus.PERMISSION_DENIED, http: 403 },
  NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404 },
  METHOD_NOT_ALLOWED: { grpc: GrpcStatus.UNIMPLEMENTED, http: 405 },
  OUT_OF_STOCK: conflict,
  INSUFFICIENT_STOCK: conflict,
  CAPACITY_EXCEEDED: conflict,
  HOLD_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404 },
  HOLD_RELEASED: conflict,
  HOLD_EXPIRED: conflict,
  HOLD_ABORTED: conflict,
  HOLD_FULFILLED: conflict,
  // The same key with another request: the caller's bug, not a state.
  REQUEST_ID_REUSED: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 422 },
  CURRENCY_MISMATCH: conflict,
  CART_EMPTY: conflict,
  CART_LOCKED: conflict,
  ORDER_EXPIRED: conflict,
  ORDER_CANCELLED: conflict,
  ORDER_ALREADY_PAID: conflict,
  OVERLOADED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429 },
  UNAVAILABLE: { grpc: GrpcStatus.UNAVAILABLE, http: 503 },
  INTERNAL: { grpc: GrpcStatus.INTERNAL, http: 500 },
};

export type Details = Record<string, string | number>;

/** The one error type the service layer throws for an expected refusal;
 * each transport turns it into its status and body. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly code: ApiCode,
    message: string,
    readonly details: Details = {},
  ) {
    super(message);
  }

  get httpStatus(): number {
    return statusOf[this.code].http;
  }

  get grpcStatus(): GrpcStatus {
    return statusOf[this.code].grpc;
  }

  toJSON(): { error: { code: ApiCode; message: string; details: Details } } {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

export function invalid(message: string, details: Details = {}): ApiError {
  return new ApiError(ApiCode.InvalidArgument, message, details);
}

export function notFound(what: string, id: string): ApiError {
  return new ApiError(ApiCode.NotFound, `${what} '${id}' not found`, { kind: what, id });
}
