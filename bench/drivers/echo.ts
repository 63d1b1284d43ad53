// The bare echo servers (bench/lib/echo_grpc.ts, echo_http.ts) shared by
// the echo drivers of a factory call: each started on first use, stopped
// when the last driver closes.

import { type ServerChild, startEcho } from "../lib/server_child.ts";

export class EchoHost {
  private starting: Promise<ServerChild> | null = null;
  private users = 0;

  constructor(readonly transport: "grpc" | "http") {}

  acquire(): void {
    this.users++;
  }

  async release(): Promise<void> {
    this.users--;
    if (this.users === 0) await this.stop();
  }

  ready(): Promise<ServerChild> {
    this.starting ??= startEcho(this.transport);
    return this.starting;
  }

  async stop(): Promise<void> {
    const starting = this.starting;
    this.starting = null;
    if (starting === null) return;
    const server = await starting.catch(() => null);
    await server?.stop();
  }
}
