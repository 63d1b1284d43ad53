// The gateway: one service layer (catalog, stock, carts, orders, auth) and
// its two transports, gRPC and HTTP/JSON.

export { Auth, type Principal, Role } from "./auth.ts";
export { Catalog } from "./catalog.ts";
export { ApiCode, ApiError, statusOf } from "./errors.ts";
export { buildGrpc, serviceDefinition } from "./grpc.ts";
export { buildHttp } from "./http.ts";
export { gatewayLimits } from "./limits.ts";
export { Metrics } from "./metrics.ts";
export { Orders } from "./orders.ts";
export { Operation, Service } from "./service.ts";
export { Stock } from "./stock.ts";
