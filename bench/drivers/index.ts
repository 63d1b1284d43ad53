// stockd and the bare echo servers as drivers of the comparison suite
// (bench/lib/scenario.ts): stockd over gRPC (grpc-js, unary and batch; and
// h2load) and HTTP (autocannon; and wrk), each beside the echo server of
// its transport driven by the same client. One stockd server and one echo
// server per transport serve every driver of a call; each starts on first
// use and stops when the last driver using it is closed.
//
// Systems, paired by name in the report:
//   stockd gRPC        node grpc-js   hot uniform checkout contention
//   stockd gRPC batch  node grpc-js   hot uniform
//   stockd HTTP        node autocannon hot uniform checkout contention
//   stockd gRPC        c    h2load    hot uniform contention
//   stockd HTTP        c    wrk       hot uniform (closed loop only)
//   echo gRPC          node grpc-js / c h2load
//   echo HTTP          node autocannon / c wrk
// Other scenarios throw Skipped with the reason.

import type { Driver, DriverFactory } from "../lib/scenario.ts";
import { toolVersion } from "./common.ts";
import { EchoHost } from "./echo.ts";
import { echoH2loadDriver, h2loadProgram, stockdH2loadDriver } from "./h2load.ts";
import { echoGrpcDriver, stockdBatchDriver, stockdGrpcDriver } from "./node_grpc.ts";
import { echoHttpDriver, stockdHttpDriver } from "./node_http.ts";
import { StockdHost } from "./stockd.ts";
import { echoWrkDriver, stockdWrkDriver, wrkProgram } from "./wrk.ts";

export { batchCallsFor, batchSize } from "./node_grpc.ts";
export { contentionHoldSeconds, holdDuration } from "./stockd.ts";

export const stockdDrivers: DriverFactory = async (ctx) => {
  const stockd = new StockdHost(ctx);
  const echoGrpc = new EchoHost("grpc");
  const echoHttp = new EchoHost("http");
  const drivers: Driver[] = [
    stockdGrpcDriver(stockd),
    echoGrpcDriver(echoGrpc),
    stockdBatchDriver(stockd),
    stockdHttpDriver(stockd),
    echoHttpDriver(echoHttp),
  ];
  const skipped: { system: string; reason: string }[] = [];
  if (toolVersion(h2loadProgram, ["--version"]) !== null) {
    drivers.push(stockdH2loadDriver(stockd), echoH2loadDriver(echoGrpc));
  } else {
    const reason = `${h2loadProgram} not found (apt-get install nghttp2-client)`;
    skipped.push(
      { system: "stockd gRPC (h2load)", reason },
      { system: "echo gRPC (h2load)", reason },
    );
  }
  if (toolVersion(wrkProgram, ["--version"]) !== null) {
    drivers.push(stockdWrkDriver(stockd), echoWrkDriver(echoHttp));
  } else {
    const reason = `${wrkProgram} not found (apt-get install wrk)`;
    skipped.push({ system: "stockd HTTP (wrk)", reason }, { system: "echo HTTP (wrk)", reason });
  }
  return { drivers, skipped };
};
