// The bare gRPC transport for the gateway benchmark: a grpc-js server with
// one unary method that ignores its request and answers a fixed small
// response. Messages pass as raw bytes: no protobuf work on either side.
//
//   node --import tsx bench/lib/echo_grpc.ts [PORT]
//
// Prints one JSON line {"msg":"listening","grpcPort":N}; stops on SIGTERM.

import { pathToFileURL } from "node:url";
import {
  type handleUnaryCall,
  Server,
  ServerCredentials,
  type ServiceDefinition,
} from "@grpc/grpc-js";

/** The one method; the load generator calls it with any request bytes. */
export const echoPath = "/stockd.bench.v1.EchoService/Echo";

/** Field 1 (a string id), as small as a real answer gets. */
const answer = Buffer.from([0x0a, 0x04, 0x65, 0x63, 0x68, 0x6f]);

/** Like the gateway's bound; a ReserveBatch of 1,000 is about 60 KB. */
const messageBytesMax = 4 * 1024 * 1024;

const identity = (b: Buffer) => b;

const definition: ServiceDefinition = {
  Echo: {
    path: echoPath,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

const echo: handleUnaryCall<Buffer, Buffer> = (_call, callback) => callback(null, answer);

function main(): void {
  const server = new Server({
    "grpc.max_receive_message_length": messageBytesMax,
    "grpc.max_send_message_length": messageBytesMax,
  });
  server.addService(definition, { Echo: echo });
  server.bindAsync(
    `127.0.0.1:${Number(process.argv[2] ?? 0)}`,
    ServerCredentials.createInsecure(),
    (err, port) => {
      if (err !== null) {
        process.stderr.write(`echo-grpc: ${err.message}\n`);
        process.exit(1);
      }
      process.stdout.write(`${JSON.stringify({ msg: "listening", grpcPort: port })}\n`);
    },
  );
  process.once("SIGTERM", () => {
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => server.forceShutdown(), 2000).unref();
  });
}

// Imported for `echoPath` by the benchmark; run as a script, it serves.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href)
  main();
